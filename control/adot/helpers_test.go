package adot

import (
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/psavd/psavd/internal/testtool"

	"github.com/psavd/psavd/internal/bindtest"
)

const (
	testServerName = bindtest.DefaultServerName
	testZone       = bindtest.DefaultZone
)

// testPKI is a throw-away CA and a server certificate it signed.
type testPKI = bindtest.PKI

func newPKI(t testing.TB, dir string, names ...string) *testPKI {
	t.Helper()
	p, err := bindtest.NewPKI(dir, names...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func freePort(t testing.TB) int {
	t.Helper()
	p, err := bindtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// zoneText is the test zone: i.map-server.example.test has 192.0.2.(10+i)
// and 2001:db8::(10+i) for i in 0..3.
func zoneText() string { return bindtest.ZoneText(testZone) }

var bindOnce struct {
	sync.Mutex
	b *bindtest.BIND
}

// startBIND starts one named (TLS 1.3 and TLS 1.2-only listeners) for the
// whole test binary run on first use (stopped by TestMain), or skips if
// named is not installed.
func startBIND(t *testing.T) *bindtest.BIND {
	t.Helper()
	testtool.Path(t, "named", "bind9")
	bindOnce.Lock()
	defer bindOnce.Unlock()
	if bindOnce.b != nil {
		return bindOnce.b
	}
	b, err := bindtest.Start("", bindtest.Options{TLS12: true})
	if errors.Is(err, bindtest.ErrNoNamed) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	cleanups = append(cleanups, func() { _ = b.Stop() })
	bindOnce.b = b
	return b
}

// cleanups run after all tests (TestMain), so one named serves every test.
var cleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	os.Exit(code)
}
