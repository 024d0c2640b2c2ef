package adot

import (
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/psavd/psavd/internal/testtool"

	"github.com/psavd/psavd/internal/bindserver"
	"github.com/psavd/psavd/internal/testpki"
)

const (
	testServerName = bindserver.DefaultServerName
	testZone       = bindserver.DefaultZone
)

// testPKI is a throw-away CA and a server certificate it signed.
type testPKI = testpki.ServerPKI

func newPKI(t testing.TB, dir string, names ...string) *testPKI {
	t.Helper()
	p, err := testpki.NewServerPKI(dir, names...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func freePort(t testing.TB) int {
	t.Helper()
	p, err := bindserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// zoneText is the test zone: i.map-server.example.test has 192.0.2.(10+i)
// and 2001:db8::(10+i) for i in 0..3.
func zoneText() string { return bindserver.ZoneText(testZone) }

var bindOnce struct {
	sync.Mutex
	b *bindserver.BIND
}

// startBIND starts one named (TLS 1.3 and TLS 1.2-only listeners) for the
// whole test binary run on first use (stopped by TestMain), or skips if
// named is not installed.
func startBIND(t *testing.T) *bindserver.BIND {
	t.Helper()
	testtool.Path(t, "named", "bind9")
	bindOnce.Lock()
	defer bindOnce.Unlock()
	if bindOnce.b != nil {
		return bindOnce.b
	}
	b, err := bindserver.Start("", bindserver.Options{TLS12: true, ResponsePadding: ResponsePadBlock})
	if errors.Is(err, bindserver.ErrNoNamed) {
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
