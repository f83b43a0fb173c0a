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

	"github.com/jordan-wright/email"

	"github.com/backupkit/backupkit/schema"
)

// mail sends plain-text mail: STARTTLS when the server offers it (TLS
// verification on), implicit TLS with tls: tls, auth when configured.
// Transient (4xx) SMTP replies and connection errors are retried with
// backoff within the route's bound.
type mail struct {
	c        schema.NotificationConfig
	attempts int
	opt      Options
}

func newEmail(c schema.NotificationConfig, o Options) *mail {
	return &mail{c: c, attempts: c.MaxAttempts, opt: o}
}

// Subject is the mail subject for an event.
func Subject(e Event) string { return "[backupkit] " + e.Summary() }

func (m *mail) send(ctx context.Context, e Event) error {
	msg := email.NewEmail()
	msg.From = m.c.From
	msg.To = m.c.Recipients()
	msg.Subject = Subject(e)
	msg.Text = []byte(text(e))
	raw, err := msg.Bytes()
	if err != nil {
		return err
	}
	wait := m.opt.RetryWaitMin
	for attempt := 1; ; attempt++ {
		err = m.deliver(ctx, raw)
		if err == nil || !transient(err) || attempt >= m.attempts {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, m.opt.RetryWaitMax)
	}
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
	tlsCfg := &tls.Config{ServerName: m.c.SMTPHost, MinVersion: tls.VersionTLS12}
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
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(tlsCfg); err != nil {
				return fmt.Errorf("STARTTLS with %s: %w", addr, err)
			}
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
	for _, to := range m.c.Recipients() {
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
