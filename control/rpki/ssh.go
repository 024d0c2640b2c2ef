package rpki

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHSubsystem is the SSH subsystem an RTR cache serves (RFC 8210 §9.2).
const SSHSubsystem = "rpki-rtr"

// dialSSH runs the SSH handshake over conn (the cache's host key checked by
// cfg.HostKeyCallback), opens a session and requests the rpki-rtr
// subsystem; the PDUs then flow over the session's stdin and stdout.
func dialSSH(ctx context.Context, conn net.Conn, addr string, cfg *ssh.ClientConfig) (net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ssh: %w", err)
	}
	client := ssh.NewClient(cc, chans, reqs)
	fail := func(what string, err error) (net.Conn, error) {
		client.Close()
		return nil, fmt.Errorf("ssh: %s: %w", what, err)
	}
	sess, err := client.NewSession()
	if err != nil {
		return fail("session", err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		return fail("stdin", err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return fail("stdout", err)
	}
	if err := sess.RequestSubsystem(SSHSubsystem); err != nil {
		return fail("subsystem "+SSHSubsystem, err)
	}
	conn.SetDeadline(time.Time{})
	return &sshConn{Conn: conn, client: client, r: stdout, w: stdin}, nil
}

// sshConn is an RTR session over SSH as a net.Conn: reads and writes go
// through the SSH channel, deadlines and addresses are the TCP
// connection's (a deadline that fires breaks the whole connection, which
// is what the session wants: it then reconnects).
type sshConn struct {
	net.Conn
	client *ssh.Client
	r      io.Reader
	w      io.WriteCloser
}

func (c *sshConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *sshConn) Write(b []byte) (int, error) { return c.w.Write(b) }
func (c *sshConn) Close() error                { return c.client.Close() }
