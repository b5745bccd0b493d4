package server

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are keygate's Prometheus metrics, in a registry of their own (no
// global registry).
type Metrics struct {
	reg          *prometheus.Registry
	decisions    *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	keyWrites    *prometheus.CounterVec
	reloads      *prometheus.CounterVec
	reloadTime   *prometheus.HistogramVec
	revision     *prometheus.GaugeVec
	logDropped   *prometheus.CounterVec
	logTruncated prometheus.Counter
	decisionErrs prometheus.Counter
	cacheHits    prometheus.Counter
	cacheMisses  prometheus.Counter
	// cache is the decision point whose cache the scrape reports (nil: none).
	cache atomic.Pointer[decision.Point]

	// Resolved children, so the decision path skips label hashing.
	decisionCounters sync.Map // decisionLabels -> prometheus.Counter
	latencyContent   prometheus.Observer
	latencyMgmt      prometheus.Observer

	counts     func() map[string]int
	perService sync.Once
}

type decisionLabels struct {
	api, result string
	status      int
}

// NewMetrics registers keygate's metrics, Go runtime and process metrics,
// and the number of stored keys, read from counts at scrape time. Series
// per service are off unless EnablePerService is called: /metrics needs no
// credentials, and a list of service ids is what the key API's 403 for
// unknown services keeps to itself.
func NewMetrics(counts func() map[string]int) *Metrics {
	m := &Metrics{
		counts: counts,
		reg:    prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_decisions_total", Help: "Decisions by API, result and the status the content service should answer.",
		}, []string{"api", "result", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keygate_decision_duration_seconds",
			Help:    "Time to decide: key lookup, input building and policy evaluation.",
			Buckets: []float64{.000005, .00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05},
		}, []string{"api"}),
		keyWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_key_writes_total", Help: "Key-management writes by action and answered status.",
		}, []string{"action", "status"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_reloads_total", Help: "Reloads of policies or data by result (ok, unchanged, error).",
		}, []string{"kind", "result"}),
		reloadTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keygate_reload_duration_seconds", Help: "Time to load and compile policies or data.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"kind"}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keygate_policy_revision_info", Help: "The policy revision serving now (value 1).",
		}, []string{"revision"}),
		logDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_decision_log_dropped_total",
			Help: "Decision log entries lost, by reason: queue_full (the sink fell behind or is blocked) or write_error (the sink refused the write).",
		}, []string{"reason"}),
		logTruncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_decision_log_truncated_total", Help: "Decision log entries whose fields were cut to 1 KiB.",
		}),
		decisionErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_decision_errors_total", Help: "Evaluations that failed and were answered as a deny.",
		}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_decision_cache_hits_total", Help: "Decisions answered from the decision cache.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_decision_cache_misses_total", Help: "Decisions evaluated by the policy engine.",
		}),
	}
	// Both reasons exist from the start, at 0, so that an alert on them
	// needs no absent() clause.
	m.logDropped.WithLabelValues(decision.DropQueueFull)
	m.logDropped.WithLabelValues(decision.DropWriteError)
	m.latencyContent = m.latency.WithLabelValues(decision.APIContent)
	m.latencyMgmt = m.latency.WithLabelValues(decision.APIManagement)
	m.reg.MustRegister(m.cacheHits, m.cacheMisses, m.decisions, m.latency, m.keyWrites, m.reloads, m.reloadTime, m.revision, m.logDropped, m.logTruncated, m.decisionErrs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&keysCollector{counts: counts, desc: prometheus.NewDesc("keygate_keys_stored", "API keys of all services.", nil, nil)},
		newCacheCollector(&m.cache))
	return m
}

// useCache makes the scrape report the decision cache of c (nil: an empty cache).
func (m *Metrics) useCache(c *decision.Point) { m.cache.Store(c) }

// cacheCollector reports the decision cache's size and evictions at scrape
// time.
type cacheCollector struct {
	cache                          *atomic.Pointer[decision.Point]
	entries, bytes, evicted, stale *prometheus.Desc
}

func newCacheCollector(c *atomic.Pointer[decision.Point]) *cacheCollector {
	return &cacheCollector{
		cache:   c,
		entries: prometheus.NewDesc("keygate_decision_cache_entries", "Decisions held by the decision cache.", nil, nil),
		bytes:   prometheus.NewDesc("keygate_decision_cache_bytes", "Approximate memory of the decision cache's entries.", nil, nil),
		evicted: prometheus.NewDesc("keygate_decision_cache_evictions_total", "Entries evicted to make room for others.", nil, nil),
		stale: prometheus.NewDesc("keygate_decision_cache_stale_total",
			"Lookups that found an entry decided before a change to its service or key (counted as misses too).", nil, nil),
	}
}

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.entries
	ch <- c.bytes
	ch <- c.evicted
	ch <- c.stale
}

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	var st decision.CacheStats
	if dc := c.cache.Load(); dc != nil {
		st = dc.CacheStats()
	}
	ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(st.Entries))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(st.Evictions))
	ch <- prometheus.MustNewConstMetric(c.stale, prometheus.CounterValue, float64(st.Stale))
}

// EnablePerService adds the series that name services to the metrics:
// keygate_keys{service}, the keys of each service. Only for a /metrics that
// clients cannot reach (serve --metrics-per-service).
func (m *Metrics) EnablePerService() {
	m.perService.Do(func() {
		m.reg.MustRegister(&keysCollector{counts: m.counts, perService: true,
			desc: prometheus.NewDesc("keygate_keys", "API keys per service.", []string{"service"}, nil)})
	})
}

// maxScrapes bounds concurrent /metrics answers: a scraper that never
// reads its answer holds one until the server's write timeout, and more
// than a few at once are answered 503 rather than piling up goroutines and
// buffers. Decisions never wait on a scrape (a scrape holds no lock of
// theirs once gathered).
const maxScrapes = 4

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, MaxRequestsInFlight: maxScrapes})
}

func (m *Metrics) observeDecision(api string, d *decision.Decision, err error, took time.Duration) {
	result := "deny"
	switch {
	case err != nil:
		result = "error"
		m.decisionErrs.Inc()
	case d.Allow:
		result = "allow"
	}
	l := decisionLabels{api: api, result: result, status: d.Status}
	c, ok := m.decisionCounters.Load(l)
	if !ok {
		c, _ = m.decisionCounters.LoadOrStore(l, m.decisions.WithLabelValues(api, result, strconv.Itoa(d.Status)))
	}
	c.(prometheus.Counter).Inc()
	if api == decision.APIManagement {
		m.latencyMgmt.Observe(took.Seconds())
	} else {
		m.latencyContent.Observe(took.Seconds())
	}
}

// observeKeyWrite counts a key write by the status it was answered with:
// success on a success, the mapped error status otherwise.
func (m *Metrics) observeKeyWrite(action string, success int, err error) {
	status := strconv.Itoa(success)
	if err != nil {
		status = "500"
		var ke *keystore.Error
		if errors.As(err, &ke) {
			status = strconv.Itoa(ke.Status)
		}
	}
	m.keyWrites.WithLabelValues(action, status).Inc()
}

func (m *Metrics) observeReload(kind, result string, took time.Duration, revision string) {
	m.reloads.WithLabelValues(kind, result).Inc()
	m.reloadTime.WithLabelValues(kind).Observe(took.Seconds())
	if kind == "policies" && result == "ok" {
		m.revision.Reset()
		m.revision.WithLabelValues(revision).Set(1)
	}
}

// SetRevision records the revision loaded at start.
func (m *Metrics) SetRevision(revision string) {
	m.revision.Reset()
	m.revision.WithLabelValues(revision).Set(1)
}

// DecisionLogDropped counts n decision-log entries lost for reason
// (decision.DropQueueFull, decision.DropWriteError); pass it as DecisionLogOptions.Dropped.
func (m *Metrics) DecisionLogDropped(reason string, n int) {
	m.logDropped.WithLabelValues(reason).Add(float64(n))
}

// DecisionLogTruncated counts a decision-log entry whose fields were cut;
// pass it as DecisionLogOptions.Truncated.
func (m *Metrics) DecisionLogTruncated() { m.logTruncated.Inc() }

// keysCollector reports keys at scrape time: per service, or the sum.
type keysCollector struct {
	counts     func() map[string]int
	desc       *prometheus.Desc
	perService bool
}

func (k *keysCollector) Describe(ch chan<- *prometheus.Desc) { ch <- k.desc }

func (k *keysCollector) Collect(ch chan<- prometheus.Metric) {
	counts := k.counts()
	if !k.perService {
		total := 0
		for _, n := range counts {
			total += n
		}
		ch <- prometheus.MustNewConstMetric(k.desc, prometheus.GaugeValue, float64(total))
		return
	}
	for svc, n := range counts {
		ch <- prometheus.MustNewConstMetric(k.desc, prometheus.GaugeValue, float64(n), svc)
	}
}
