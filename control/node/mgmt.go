package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/control/mgmtpb"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/internal/buildinfo"
)

// DefaultSocket is where psavctl finds the local node ([control] socket).
const DefaultSocket = mgmtpb.DefaultSocket

// controlRole serves the management API (control/mgmtpb) on a Unix socket:
// every kind of node has one, psavctl talks to it without certificates.
// Access control is the file system's and the kernel's: the socket is
// 0660 in a 0750 directory, and a caller whose uid is neither root nor
// psavd's own is refused (SO_PEERCRED). The default path is skipped, with a
// warning, when another live psavd already serves it (several nodes on one
// machine, as in the lab); a configured path that cannot be bound is a
// failure of the role.
func (n *Node) controlRole(path string, configured bool) Role {
	return Role{Name: "control", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
		ln, err := listenControl(path)
		if err != nil {
			if !configured && errors.Is(err, errSocketServed) {
				n.log.Warn("control socket served by another process: this node has none (set [control] socket)", zap.String("socket", path))
				ready()
				<-ctx.Done()
				return nil
			}
			return fmt.Errorf("control.socket: %w", err)
		}
		defer os.Remove(path)
		srv := grpc.NewServer(grpc.Creds(peerCredentials{}), grpc.MaxRecvMsgSize(16<<20))
		mgmtpb.RegisterManagementServer(srv, &mgmtServer{n: n})
		stop := context.AfterFunc(ctx, srv.Stop)
		defer stop()
		n.log.Info("control socket", zap.String("socket", path))
		ready()
		if err := srv.Serve(ln); err != nil && ctx.Err() == nil {
			return fmt.Errorf("control.socket: %w", err)
		}
		return nil
	}}
}

var errSocketServed = errors.New("served by another process")

// listenControl binds the Unix socket at path: its directory is made 0750
// if missing, a stale socket file (nobody listening) is removed, a live
// one is errSocketServed.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, errSocketServed
	}
	_ = os.Remove(path) // stale: its process is gone
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// peerCredentials is the transport "credentials" of the control socket:
// no TLS, but the caller's uid checked with SO_PEERCRED.
type peerCredentials struct{}

type peerAuth struct {
	credentials.CommonAuthInfo
	uid uint32
}

func (peerAuth) AuthType() string { return "peercred" }

func (peerCredentials) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, nil, errors.New("control socket: not a Unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return nil, nil, err
	}
	if cerr != nil {
		return nil, nil, cerr
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Getuid() {
		return nil, nil, fmt.Errorf("control socket: uid %d may not manage this node", cred.Uid)
	}
	return c, peerAuth{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}, uid: cred.Uid}, nil
}

func (peerCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("control socket: server side only")
}
func (peerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}
func (p peerCredentials) Clone() credentials.TransportCredentials { return p }
func (peerCredentials) OverrideServerName(string) error           { return nil }

// mgmtServer answers the management API from the running node.
type mgmtServer struct {
	mgmtpb.UnimplementedManagementServer
	n *Node
}

func (s *mgmtServer) Status(context.Context, *mgmtpb.StatusRequest) (*mgmtpb.StatusReply, error) {
	n := s.n
	c := n.Config()
	ok, down := n.sup.Ready()
	r := &mgmtpb.StatusReply{Version: buildinfo.Line("psavd"), Asn: c.PSAV.ASN, Ready: ok, NotReady: down,
		Config: c.File, Epoch: -1, StartedUnix: n.started.Unix()}
	for _, rs := range n.sup.Roles() {
		r.Roles = append(r.Roles, &mgmtpb.Role{Name: rs.Name, Policy: rs.Policy.String(), Up: rs.Up, Restarts: rs.Restarts, LastError: rs.LastError})
	}
	if n.dp != nil {
		t := n.dp.eng.Tables()
		r.Epoch = engine.Epoch(time.Now().Unix(), t.T0, t.Period)
	}
	if p := n.psav; p != nil {
		if p.feed != nil {
			r.AbrFeedState = p.feed.State().String()
		}
		if p.acs != nil {
			r.Acs = p.acs.Status()
		}
	}
	return r, nil
}

func (s *mgmtServer) Tables(context.Context, *mgmtpb.TablesRequest) (*acspb.Tables, error) {
	if p := s.n.psav; p != nil && p.acs != nil {
		return acspb.Redacted(p.acs.Tables(time.Now())), nil // no tool needs a key
	}
	return nil, status.Error(codes.FailedPrecondition, "this node runs no ACS (its tables are on its ACS: psavctl -socket there, or psavctl tables -acs)")
}

func (s *mgmtServer) Members(context.Context, *mgmtpb.MembersRequest) (*mgmtpb.MembersReply, error) {
	p := s.n.psav
	if p == nil || p.acs == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node runs no ACS")
	}
	set := p.acs.Membership()
	d := set.Digest()
	out := &mgmtpb.MembersReply{Digest: hex.EncodeToString(d[:])}
	for _, rec := range set.All() {
		m := &mgmtpb.MemberRecord{Asn: rec.ASN, Ascn: rec.ASCN, Version: rec.Version, Kind: rec.Kind.String(), Key: rec.Key.String()}
		for _, pf := range rec.Prefixes {
			m.Prefixes = append(m.Prefixes, pf.String())
		}
		for _, a := range rec.ACS {
			m.Acs = append(m.Acs, a.String())
		}
		out.Members = append(out.Members, m)
	}
	return out, nil
}

func (s *mgmtServer) MapCache(context.Context, *mgmtpb.MapCacheRequest) (*mgmtpb.MapCacheReply, error) {
	l := s.n.lisp
	if l == nil || l.x == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node runs no LISP xTR")
	}
	out := &mgmtpb.MapCacheReply{}
	for _, e := range l.x.Entries(time.Now()) {
		me := &mgmtpb.MapCacheEntry{InstanceId: e.InstanceID, Eid: e.EID.String(), Negative: len(e.Locators) == 0, ExpiresUnix: e.Expires.Unix()}
		for _, loc := range e.Locators {
			me.Locators = append(me.Locators, &mgmtpb.Locator{Address: loc.Addr.String(), Priority: uint32(loc.Priority), Weight: uint32(loc.Weight), Up: loc.Up})
		}
		out.Entries = append(out.Entries, me)
	}
	return out, nil
}

func (s *mgmtServer) Registrations(context.Context, *mgmtpb.RegistrationsRequest) (*mgmtpb.RegistrationsReply, error) {
	l := s.n.lisp
	if l == nil || l.ms == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node runs no Map-Server")
	}
	out := &mgmtpb.RegistrationsReply{}
	for _, r := range l.ms.Registrations(time.Now()) {
		reg := &mgmtpb.Registration{Site: r.Site, InstanceId: r.EID.IID, Eid: r.EID.Prefix.String(), Etr: r.ETR.String(), ExpiresUnix: r.Expires.Unix()}
		for _, loc := range r.Record.Locators {
			reg.Locators = append(reg.Locators, &mgmtpb.Locator{Address: loc.Address.String(), Priority: uint32(loc.Priority), Weight: uint32(loc.Weight), Up: loc.Reachable})
		}
		out.Registrations = append(out.Registrations, reg)
	}
	return out, nil
}

func (s *mgmtServer) Counters(context.Context, *mgmtpb.CountersRequest) (*mgmtpb.CountersReply, error) {
	d := s.n.dp
	if d == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node has no data plane")
	}
	t := d.col.Sum()
	out := &mgmtpb.CountersReply{}
	for i, p := range d.spec.Ports {
		pc := &mgmtpb.PortCounters{Port: p.Name}
		add := func(name string, v uint64) {
			if v > 0 {
				pc.Counts = append(pc.Counts, &mgmtpb.Count{Name: name, Packets: v})
			}
		}
		add("received", t.RxPackets[i])
		for _, a := range engine.Actions() {
			add(a.String(), t.Actions[i][a])
		}
		for _, r := range engine.Reasons() {
			add("drop "+r.String(), t.Drops[i][r]+t.XDPDrops[i][r]) // both stages: engine and XDP pre-filter
		}
		add("transmitted", t.TxPackets[i])
		out.Ports = append(out.Ports, pc)
	}
	return out, nil
}

func (s *mgmtServer) Reload(context.Context, *mgmtpb.ReloadRequest) (*mgmtpb.ReloadReply, error) {
	res, problems, err := s.n.ReloadFile()
	r := &mgmtpb.ReloadReply{Applied: err == nil, Problems: problems}
	switch {
	case len(problems) > 0:
		r.Outcome = "refused: the file has problems; the running configuration stays"
	case err != nil:
		r.Outcome = err.Error()
	default:
		r.Outcome = res.String()
	}
	return r, nil
}

func (s *mgmtServer) SubmitRecord(_ context.Context, req *mgmtpb.SubmitRecordRequest) (*mgmtpb.SubmitRecordReply, error) {
	p := s.n.psav
	if p == nil || p.acs == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node runs no ACS: submit the record to your AS's ACS")
	}
	stored, err := p.acs.Publish(req.GetRecord())
	if err != nil {
		if r := membership.ReasonOf(err); r != membership.ReasonNone {
			return &mgmtpb.SubmitRecordReply{Stored: false, Reason: fmt.Sprintf("%s: %v", r, err)}, nil
		}
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	s.n.log.Info("membership record submitted", zap.Bool("stored", stored))
	return &mgmtpb.SubmitRecordReply{Stored: stored}, nil
}

// ReloadFile loads the configuration file the node runs from again and
// reloads it (SIGHUP and the management API): the file's problems, if it
// has any, or the reload's outcome.
func (n *Node) ReloadFile() (Result, []string, error) {
	next, err := config.Load(n.Config().File)
	if err != nil {
		var ps config.Problems
		var problems []string
		if errors.As(err, &ps) {
			for _, p := range ps {
				problems = append(problems, p.String())
				n.log.Error("reload refused: configuration has a problem; the running configuration stays", zap.String("problem", p.String()))
			}
		} else {
			problems = []string{err.Error()}
			n.log.Error("reload refused; the running configuration stays", zap.Error(err))
		}
		n.ReloadRefused()
		return Result{}, problems, err
	}
	res, err := n.Reload(next)
	return res, nil, err
}
