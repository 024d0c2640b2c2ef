package mapserver

import (
	"testing"

	"github.com/psavd/psavd/control/lisp"
)

// A reload keeps the registrations of kept sites, takes a changed key at
// the next Map-Register, and drops a removed site's registrations at once.
func TestSetSites(t *testing.T) {
	s := newServer(t, nil)
	if out := s.Handle(regA(t, 1, regOpt{}, rec(pfx("10.1.0.0/16"), nil, "192.0.2.10")), etrA, t0); len(out) != 0 {
		t.Fatalf("reply: %v", out)
	}
	if len(s.Registrations(t0)) != 1 {
		t.Fatal("not registered")
	}
	sites := testSites()
	sites[0].Key = []byte("a-new-secret")
	if err := s.SetSites(sites); err != nil {
		t.Fatal(err)
	}
	if regs := s.Registrations(t0); len(regs) != 1 || regs[0].Site != "a" {
		t.Fatalf("kept site lost its registration: %+v", regs)
	}
	s.Handle(register(t, lisp.KeyIDHMACSHA256128, keyA, 2, regOpt{}, rec(pfx("10.1.0.0/16"), nil, "192.0.2.10")), etrA, t0)
	if st := s.Stats(); st.Refused[ReasonAuthFailed] != 1 {
		t.Fatalf("old key still accepted: %+v", st.Refused)
	}
	s.Handle(register(t, lisp.KeyIDHMACSHA256128, []byte("a-new-secret"), 3, regOpt{}, rec(pfx("10.1.0.0/16"), nil, "192.0.2.10")), etrA, t0)
	if st := s.Stats(); st.Refused[ReasonAuthFailed] != 1 || st.Refreshes != 1 {
		t.Fatalf("new key refused: %+v", st)
	}
	if err := s.SetSites(sites[1:]); err != nil {
		t.Fatal(err)
	}
	if regs := s.Registrations(t0); len(regs) != 0 {
		t.Fatalf("removed site still answered for: %+v", regs)
	}
	if err := s.SetSites([]Site{sites[1], sites[1]}); err == nil {
		t.Fatal("duplicate site names accepted")
	}
}
