package afxdp

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/ports"
)

// TestBusyPollOptions: out-of-range busy-poll options are refused, and the
// budget defaults to 64 once busy polling is on.
func TestBusyPollOptions(t *testing.T) {
	for _, o := range []Options{{BusyPoll: -1}, {BusyPoll: 2 * time.Second}, {BusyPoll: time.Millisecond, BusyPollBudget: 65536}, {BusyPollBudget: -1}} {
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	o, err := Options{BusyPoll: time.Millisecond}.withDefaults()
	if err != nil || o.BusyPollBudget != 64 {
		t.Errorf("budget %d, %v; want 64", o.BusyPollBudget, err)
	}
}

// TestBusyPoll opens a port with busy polling on a veth: the socket carries
// the options (SO_PREFER_BUSY_POLL and SO_BUSY_POLL read back from the
// kernel; SO_BUSY_POLL_BUDGET cannot be read back, its setsockopt not
// failing is all there is), every frame sent to the port arrives intact,
// and an empty RX ring is busy-polled (counted).
func TestBusyPoll(t *testing.T) {
	requireAFXDP(t)
	pa, pb := twoPorts(t, Options{Mode: ModeNative, Frames: 256, RingSize: 64, BusyPoll: 1500 * time.Nanosecond, BusyPollBudget: 16})
	for _, c := range []struct {
		opt, want int
	}{{unix.SO_PREFER_BUSY_POLL, 1}, {unix.SO_BUSY_POLL, 2}} {
		if v, err := unix.GetsockoptInt(pb.FD(), unix.SOL_SOCKET, c.opt); err != nil || v != c.want {
			t.Errorf("option %d = %d, %v; want %d", c.opt, v, err, c.want)
		}
	}
	const frames = 200
	got := map[int]bool{}
	b := ports.NewBatch(32)
	for seq := 0; seq < frames; seq += 8 {
		var pkts []ports.Packet
		for k := seq; k < seq+8; k++ {
			f := testFrame(t, macA, macB, k)
			pkts = append(pkts, ports.Packet{Buf: f, Len: len(f)})
		}
		for off := 0; off < len(pkts); {
			n, err := pa.Transmit(pkts[off:])
			if err != nil {
				t.Fatal(err)
			}
			off += n
		}
		receiveUntil(t, pb, b, 2*time.Second, func() bool { return len(got) >= seq+8 }, func(f []byte, _ int) {
			if !isTestFrame(f) {
				return
			}
			k := int(binary.BigEndian.Uint16(f[58:]))
			if !bytes.Equal(f, testFrame(t, macA, macB, k)) {
				t.Errorf("frame %d corrupt", k)
			}
			got[k] = true
		})
	}
	if len(got) != frames {
		t.Errorf("%d of %d frames arrived", len(got), frames)
	}
	if _, err := pb.Receive(b, 0); err != nil { // the ring is empty now
		t.Fatal(err)
	}
	pb.Release(b)
	st, err := pb.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RxBusyPolls == 0 {
		t.Error("no busy poll of the empty RX ring counted")
	}
	t.Logf("%d busy polls, %d frames", st.RxBusyPolls, len(got))
}
