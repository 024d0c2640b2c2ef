// Package node puts one psavd node together from its typed configuration:
// the data plane (ports, engine, poll loops), the PSAV control plane (ACS,
// ABR feed, static keys), LISP (Map-Server, xTR), LISP-Decent and the
// DNS-over-TLS server, each a Role whose Run(ctx) error runs under one
// Supervisor. A role that fails is restarted with back-off or stops the node,
// by its policy, and is never silently dead: the node is ready only while
// every role is. Reload compares a new configuration with the running one
// section by section, applies what can change live and names, by key, what
// needs a restart. cmd/psavd is a thin shell around this package.
package node
