package keystore

import "context"

// Actions of the keys policy (`input.action`).
const (
	ActionCreate = "create"
	ActionRead   = "read"
	ActionList   = "list"
	ActionUpdate = "update"
	ActionRotate = "rotate"
	ActionDelete = "delete"
)

// Authorizer decides key-management requests. The policy engine implements
// it (data.keys.decision); the store never imports the engine. An error or
// an undefined decision must be reported as an error or a deny: the store
// fails closed on both.
type Authorizer interface {
	AuthorizeKeys(ctx context.Context, req KeyRequest) (KeyDecision, error)
}

// KeyRequest marshals to exactly the input of data.keys.decision.
type KeyRequest struct {
	Action  string       `json:"action"`
	Service ServiceInput `json:"service"`
	// Member is nil (and omitted) when the bearer token matches nobody.
	Member *Member `json:"member,omitempty"`
	// Key is the proposed configuration, for create and update only.
	Key *KeySpec `json:"key,omitempty"`
}

// ServiceInput is the `service` object of the keys policy input. Plan is
// empty (omitted) when the service is unknown; APIs is omitted when the
// service does not list its content API endpoints (the advice then cannot
// tell a mistyped API from a real one).
type ServiceInput struct {
	ID       string   `json:"id"`
	Plan     string   `json:"plan,omitempty"`
	KeyCount int      `json:"keyCount"`
	APIs     []string `json:"apis,omitzero"`
}

// KeyDecision is data.keys.decision.
type KeyDecision struct {
	Allow      bool        `json:"allow"`
	Status     int         `json:"status"`
	Code       string      `json:"code"`
	Message    string      `json:"message"`
	Violations []Violation `json:"violations"`
	Warnings   []Warning   `json:"warnings"`
	Limit      int         `json:"limit"`
	// PolicyRevision is the revision of the policy that decided (not part
	// of the decision object; the Authorizer fills it in for the audit
	// trail).
	PolicyRevision string `json:"-"`
}

// Violation names an invalid flag of a proposed key configuration.
type Violation struct {
	Endpoint string `json:"endpoint"`
	Flag     string `json:"flag,omitempty"`
	// Entry is the refused entry of an IP restriction setting.
	Entry   string `json:"entry,omitempty"`
	Message string `json:"message"`
}

// Warning is advice about a key configuration (data.advice.warnings).
type Warning struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Endpoint string `json:"endpoint,omitempty"`
	Flag     string `json:"flag,omitempty"`
}
