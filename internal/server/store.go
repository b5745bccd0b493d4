package server

import (
	"time"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/prometheus/client_golang/prometheus"
)

// StoreStatuser is what a key store shared between replicas adds to
// KeyStore: where its index comes from and whether it is fresh enough to
// decide from. *keystore.Store implements it; a KeyStore without it is never
// stale.
type StoreStatuser interface {
	Status() keystore.StoreStatus
	Stale(maxStaleness time.Duration) bool
}

var _ StoreStatuser = (*keystore.Store)(nil)

// Defaults of the staleness bounds (Options.ReadyMaxStaleness and
// Options.MaxStaleness).
const (
	DefaultReadyMaxStaleness = 10 * time.Second
	DefaultMaxStaleness      = 60 * time.Second
)

// storeStale reports whether decisions must fail closed because the key
// store's index is not loaded or older than MaxStaleness.
func (s *Server) storeStale() bool {
	return s.storeSt != nil && s.storeSt.Stale(s.maxStale)
}

// storeHealth is the store part of /health.
type storeHealth struct {
	keystore.StoreStatus
	Staleness string `json:"staleness"`
}

// storeReadiness returns the store part of /health and, when the replica
// must not take traffic, why.
func (s *Server) storeReadiness() (*storeHealth, string) {
	if s.storeSt == nil {
		return nil, ""
	}
	st := s.storeSt.Status()
	h := &storeHealth{StoreStatus: st, Staleness: st.Staleness.Round(time.Millisecond).String()}
	switch {
	case !st.Ready:
		return h, "key store not loaded yet"
	case st.Kind != keystore.StoreLocal && s.readyStale > 0 && st.Staleness > s.readyStale:
		return h, "key store stale"
	}
	return h, ""
}

// storeCollector reports the key store's status at scrape time.
type storeCollector struct {
	status                                   func() keystore.StoreStatus
	ready, applied, head, staleness, resyncs *prometheus.Desc
}

func newStoreCollector(status func() keystore.StoreStatus) *storeCollector {
	return &storeCollector{
		status:    status,
		ready:     prometheus.NewDesc("keygate_store_ready", "1 once the key store index is loaded.", []string{"kind"}, nil),
		applied:   prometheus.NewDesc("keygate_store_applied_revision", "Last key store revision applied to this replica's index.", nil, nil),
		head:      prometheus.NewDesc("keygate_store_head_revision", "Newest key store revision this replica has seen in the database.", nil, nil),
		staleness: prometheus.NewDesc("keygate_store_staleness_seconds", "Time since this replica last confirmed its index equals the head.", nil, nil),
		resyncs:   prometheus.NewDesc("keygate_store_resyncs_total", "Full reloads of the index after the first.", nil, nil),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ready
	ch <- c.applied
	ch <- c.head
	ch <- c.staleness
	ch <- c.resyncs
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	ready := 0.0
	if st.Ready {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready, st.Kind)
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(st.Applied))
	ch <- prometheus.MustNewConstMetric(c.head, prometheus.GaugeValue, float64(st.Head))
	ch <- prometheus.MustNewConstMetric(c.staleness, prometheus.GaugeValue, st.Staleness.Seconds())
	ch <- prometheus.MustNewConstMetric(c.resyncs, prometheus.CounterValue, float64(st.Resyncs))
}

// ObserveStore adds the key store's status (kind, revisions, staleness) to
// the metrics.
func (m *Metrics) ObserveStore(status func() keystore.StoreStatus) {
	m.reg.MustRegister(newStoreCollector(status))
}
