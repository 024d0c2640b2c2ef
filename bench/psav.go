package bench

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/psavd/psavd/bench/gen"
	"github.com/psavd/psavd/internal/psavref"
)

// The tagged frames of the validating case are built with internal/psavref,
// an implementation of docs/wire.md §2.3–2.5 independent of the engine:
// when psavd validates them, the benchmark doubles as an interoperability
// check of the tag format.

// PSAV parameters of the benchmark's alliance: this ABR is in AS 65001, the
// traffic goes to or comes from AS 65002, one static peer.
const (
	LocalASN       = 65001
	PeerASN        = 65002
	EpochSeconds   = 3600 // long epochs: a run never sees more than one change
	peerPrefixLen4 = 24   // 203.0.113.0/24
	peerPrefixLen6 = 48   // 2001:db8:2::/48
)

// Keys is the static key material of a psavd run: the peer pair's state
// S(e0) at start epoch e0.
type Keys struct {
	S0 [32]byte
	E0 uint64
}

// NewKeys draws a fresh S0 and starts it one epoch before now.
func NewKeys(now time.Time) (Keys, error) {
	var k Keys
	if _, err := rand.Read(k.S0[:]); err != nil {
		return k, err
	}
	k.E0 = uint64(now.Unix()/EpochSeconds) - 1
	return k, nil
}

// Epoch is the epoch at time t (T0 = 0).
func Epoch(t time.Time) uint64 { return uint64(t.Unix() / EpochSeconds) }

// ValidatingFrames returns the validating case's templates: 64-octet
// IPv4/UDP 203.0.113.10 → 198.51.100.10 and IPv6/UDP 2001:db8:2::10 →
// 2001:db8:1::10 (AS 65002 to AS 65001) tagged for the epoch of now, 80
// octets each with the tag.
func ValidatingFrames(k Keys, now time.Time) ([][]byte, error) {
	e := Epoch(now)
	key, err := psavref.Key(k.S0, k.E0, e)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, f := range []struct {
		src, dst netip.Addr
		pfx      uint8
	}{{gen.OutsideV4, gen.InsideV4, peerPrefixLen4}, {gen.OutsideV6, gen.InsideV6, peerPrefixLen6}} {
		plain, err := gen.UDPFrame{SrcMAC: GenMAC, DstMAC: InMAC, Src: f.src, Dst: f.dst,
			SrcPort: 40000, DstPort: 9, Size: gen.FrameSize}.Build()
		if err != nil {
			return nil, err
		}
		tagged, err := psavref.TagFrame(plain, key, e, f.pfx)
		if err != nil {
			return nil, err
		}
		out = append(out, tagged)
	}
	return out, nil
}

// PsavdConfig returns engine.toml for the ABR under test. validating
// false: In is the inside (role ingress) and Out the outside (egress), so
// the inside's traffic to AS 65002 is tagged. validating true: In is the
// outside (egress) and Out the inside (ingress), so AS 65002's tagged
// traffic is validated and stripped. Poll loops go to env.CPUs.
func PsavdConfig(env Env, k Keys, validating bool) string {
	inRole, outRole, inName, outName := "ingress", "egress", "inside", "outside"
	if validating {
		inRole, outRole, inName, outName = "egress", "ingress", "outside", "inside"
	}
	cpus := make([]string, len(env.CPUs))
	for i, c := range env.CPUs {
		cpus[i] = fmt.Sprint(c)
	}
	return fmt.Sprintf(`# written by the psavd forwarding benchmark (bench/)
[psav]
asn = %d
epoch_seconds = %d
t0 = 0

[[psav.member]]
asn = %d
prefixes = ["198.51.100.0/24", "2001:db8:1::/48"]

[[psav.member]]
asn = %d
prefixes = ["203.0.113.0/24", "2001:db8:2::/48"]

[[psav.static_peer]]
asn = %d
start_epoch = %d
s0 = "%s"

[engine]
forwarding = "cross-connect"
cpus = [%s]
batch = 64

[[port]]
name = %q
interface = %q
role = %q
peer = %q

[[port]]
name = %q
interface = %q
role = %q
peer = %q
`, LocalASN, EpochSeconds, LocalASN, PeerASN, PeerASN, k.E0, hex.EncodeToString(k.S0[:]),
		strings.Join(cpus, ", "),
		inName, env.In, inRole, outName,
		outName, env.Out, outRole, inName)
}

// Psavd returns the psavd DUT: the binary bin run with PsavdConfig (written
// to dir) inside the middle namespace, ready when it logs "ready".
func Psavd(bin, dir string, k Keys, validating bool) *Command {
	label := "psavd-tag"
	if validating {
		label = "psavd-validate"
	}
	return &Command{
		Label: label,
		Ready: "ready",
		// The first frames after "ready" may still find rings filling; the
		// warm-up absorbs that.
		Argv: func(env Env) ([]string, error) {
			path := filepath.Join(dir, label+".toml")
			if err := os.WriteFile(path, []byte(PsavdConfig(env, k, validating)), 0o600); err != nil {
				return nil, err
			}
			return []string{bin, "-config", path}, nil
		},
	}
}

// BuildPsavd compiles cmd/psavd into dir and returns the binary's path
// (needs the Go toolchain and the module's source).
func BuildPsavd(dir string) (string, error) {
	bin := filepath.Join(dir, "psavd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/psavd/psavd/cmd/psavd")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: build psavd: %v\n%s", err, out)
	}
	return bin, nil
}

// PsavdCounters parses the counter table psavd prints when it stops
// ("port counter packets" lines, e.g. "outside  drop bad-tag  12", or
// "outside  xdp-drop no-tag  7" for the XDP pre-filter's) into a map keyed
// "port counter" ("outside drop bad-tag").
func PsavdCounters(log string) map[string]uint64 {
	m := map[string]uint64{}
	for _, line := range strings.Split(log, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		n, err := strconv.ParseUint(f[len(f)-1], 10, 64)
		if err != nil {
			continue
		}
		m[strings.Join(f[:len(f)-1], " ")] = n
	}
	return m
}

// PsavdTagDrops sums the drops that say a tag did not verify (no-tag,
// bad-tag, stale-epoch, no-key; the XDP pre-filter's "xdp-drop" lines
// included) in psavd's counters: non-zero in the
// validating case means the frames and psavd disagree on the tag.
func PsavdTagDrops(counters map[string]uint64) uint64 {
	var n uint64
	for k, v := range counters {
		for _, r := range []string{"drop no-tag", "drop bad-tag", "drop stale-epoch", "drop no-key"} {
			if strings.HasSuffix(k, r) {
				n += v
			}
		}
	}
	return n
}
