package alerting

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jordan-wright/email"
)

// mail sends plain-text mail: with tls: starttls (the default) STARTTLS
// is required (TLS verification on; a server that does not offer it is an
// error, never a silent fallback to clear text), implicit TLS with
// tls: tls, clear text only with tls: none; auth when configured.
// Transient (4xx) SMTP replies and connection errors are retried with
// backoff within the route's bound.
type mail struct {
	c   Route
	opt Options
}

func newEmail(r Route, o Options) *mail { return &mail{c: r, opt: o} }

// Subject is the mail subject for an event.
func Subject(e Event) string { return "[backupkit] " + e.Summary() }

func (m *mail) send(ctx context.Context, e Event) error {
	msg := email.NewEmail()
	msg.From = m.c.From
	msg.To = m.c.To
	msg.Subject = Subject(e)
	msg.Text = []byte(text(e))
	raw, err := msg.Bytes()
	if err != nil {
		return err
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = m.opt.RetryWaitMin, m.opt.RetryWaitMax, 0
	policy := backoff.WithContext(backoff.WithMaxRetries(b, uint64(max(m.c.MaxAttempts-1, 0))), ctx)
	return backoff.Retry(func() error {
		err := m.deliver(ctx, raw)
		if err != nil && !transient(err) {
			return backoff.Permanent(err)
		}
		return err
	}, policy)
}

// transient reports whether an SMTP error is worth retrying.
func transient(err error) bool {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code >= 400 && te.Code < 500
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, errConn)
}

var errConn = errors.New("smtp connection failed")

func (m *mail) deliver(ctx context.Context, raw []byte) error {
	addr := net.JoinHostPort(m.c.SMTPHost, strconv.Itoa(m.c.SMTPPort))
	tlsCfg := &tls.Config{ServerName: m.c.SMTPHost, MinVersion: tls.VersionTLS12, RootCAs: m.opt.RootCAs}
	d := &net.Dialer{Timeout: 15 * time.Second}
	var conn net.Conn
	var err error
	if m.c.TLS == "tls" {
		conn, err = (&tls.Dialer{NetDialer: d, Config: tlsCfg}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errConn, addr, err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, m.c.SMTPHost)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errConn, addr, err)
	}
	defer c.Close()
	if err := c.Hello("backupkit"); err != nil {
		return err
	}
	if m.c.TLS != "tls" && m.c.TLS != "none" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fmt.Errorf("%s does not offer STARTTLS, which tls: starttls requires (set tls: none to send in clear text)", addr)
		}
		if err := c.StartTLS(tlsCfg); err != nil {
			return fmt.Errorf("STARTTLS with %s: %w", addr, err)
		}
	}
	if m.c.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", m.c.Username, m.c.Password.Reveal(), m.c.SMTPHost)); err != nil {
			return fmt.Errorf("SMTP auth as %s: %w", m.c.Username, err)
		}
	}
	if err := c.Mail(m.c.From); err != nil {
		return err
	}
	for _, to := range m.c.To {
		if err := c.Rcpt(to); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(raw); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
