package alerting

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/backupkit/backupkit/schema"
)

var fast = Options{RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 50 * time.Millisecond}

func hook(url string, on ...string) schema.Notification {
	return schema.Notification{Type: "webhook", On: on, Config: schema.NotificationConfig{
		URL: schema.Secret(url), MaxAttempts: 5, MaxWait: 10 * time.Second,
		Headers: map[string]schema.Secret{"Authorization": "Bearer tok-SECRET-123"}}}
}

// statusServer answers with the given codes in turn, then 200.
func statusServer(t *testing.T, codes ...int) (*httptest.Server, *atomic.Int32, chan []byte) {
	var n atomic.Int32
	bodies := make(chan []byte, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer tok-SECRET-123" {
			t.Errorf("header missing: %v", r.Header)
		}
		if i < len(codes) {
			w.WriteHeader(codes[i])
			return
		}
		bodies <- b
	}))
	t.Cleanup(srv.Close)
	return srv, &n, bodies
}

func failure() Event {
	e := NewEvent(KindBackup, "app_db", "failure")
	e.Error = "pg_dump failed"
	e.Duration = "1.5s"
	return e
}

func TestWebhookRetriesThenSucceeds(t *testing.T) {
	srv, n, bodies := statusServer(t, 503, 503)
	d := New([]schema.Notification{hook(srv.URL+"/hook", "failure")}, nil, fast)
	if err := d.Send(context.Background(), failure()); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 3 {
		t.Fatalf("%d attempts, want 3", n.Load())
	}
	var got Event
	json.Unmarshal(<-bodies, &got)
	if got.DB != "app_db" || got.Status != "failure" || got.Event != "backup" || got.Error != "pg_dump failed" || got.Host == "" || got.Time.IsZero() {
		t.Fatalf("payload %+v", got)
	}
}

func TestWebhookNoRetryOn400(t *testing.T) {
	srv, n, _ := statusServer(t, 400, 400, 400)
	d := New([]schema.Notification{hook(srv.URL+"/hook/SECRETPATH", "failure")}, nil, fast)
	err := d.Send(context.Background(), failure())
	if err == nil || !strings.Contains(err.Error(), "HTTP 400") {
		t.Fatalf("err %v", err)
	}
	if strings.Contains(err.Error(), "SECRETPATH") {
		t.Fatalf("URL path leaked: %v", err)
	}
	if n.Load() != 1 {
		t.Fatalf("%d attempts, want 1", n.Load())
	}
}

func TestWebhook429HonoursRetryAfter(t *testing.T) {
	var n atomic.Int32
	var first, second time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			first = time.Now()
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			return
		}
		second = time.Now()
	}))
	defer srv.Close()
	d := New([]schema.Notification{hook(srv.URL, "failure")}, nil, fast)
	if err := d.Send(context.Background(), failure()); err != nil {
		t.Fatal(err)
	}
	if gap := second.Sub(first); gap < 900*time.Millisecond {
		t.Fatalf("retried after %v, Retry-After said 1s", gap)
	}
}

func TestWebhookDownIsBounded(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	n := hook("http://"+addr+"/x", "failure")
	n.Config.MaxWait = 1500 * time.Millisecond
	n.Config.MaxAttempts = 20
	d := New([]schema.Notification{n}, nil, Options{RetryWaitMin: 200 * time.Millisecond, RetryWaitMax: time.Second})
	start := time.Now()
	err := d.Send(context.Background(), failure())
	if err == nil {
		t.Fatal("delivery to a dead server succeeded")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("took %v, bound is 1.5s", el)
	}
}

func TestSlackFormatAndRouting(t *testing.T) {
	srv, _, bodies := statusServer(t)
	n := hook(srv.URL, "success")
	n.Config.Format = "slack"
	d := New([]schema.Notification{n}, nil, fast)
	d.Send(context.Background(), failure()) // not subscribed
	ok := NewEvent(KindBackup, "app_db", "success")
	ok.Dest = "local:app_db/x.dump"
	if err := d.Send(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	json.Unmarshal(<-bodies, &body)
	if !strings.Contains(body["text"], "app_db backup succeeded") || !strings.Contains(body["text"], "local:app_db/x.dump") {
		t.Fatalf("slack body %v", body)
	}
	select {
	case b := <-bodies:
		t.Fatalf("unsubscribed event delivered: %s", b)
	default:
	}
}

func TestHealthchecksPings(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
	}))
	defer srv.Close()
	n := schema.Notification{Type: "healthchecks", On: []string{"both"}, Config: schema.NotificationConfig{URL: schema.Secret(srv.URL + "/ping/uuid"), MaxAttempts: 3, MaxWait: 5 * time.Second}}
	d := New([]schema.Notification{n}, nil, fast)
	d.Send(context.Background(), NewEvent(KindStart, "app_db", ""))
	d.Send(context.Background(), NewEvent(KindBackup, "app_db", "success"))
	d.Send(context.Background(), failure())
	if got := strings.Join(paths, ","); got != "/ping/uuid/start,/ping/uuid,/ping/uuid/fail" {
		t.Fatalf("pings %s", got)
	}
}

// smtpServer is a real SMTP server (go-smtp) on loopback that records mail.
type smtpServer struct {
	addr     string
	user, pw string
	mu       sync.Mutex
	mails    []mailRec
	failN    int // answer 451 to the first failN DATA commands
}

type mailRec struct {
	from string
	to   []string
	data string
	auth bool
}

type smtpSession struct {
	s   *smtpServer
	rec mailRec
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pw string) error {
		if user != s.s.user || pw != s.s.pw {
			return errors.New("bad credentials")
		}
		s.rec.auth = true
		return nil
	}), nil
}
func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.s.user != "" && !s.rec.auth {
		return &smtp.SMTPError{Code: 530, Message: "auth required"}
	}
	s.rec.from = from
	return nil
}
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rec.to = append(s.rec.to, to)
	return nil
}
func (s *smtpSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	s.s.mu.Lock()
	defer s.s.mu.Unlock()
	if s.s.failN > 0 {
		s.s.failN--
		return &smtp.SMTPError{Code: 451, Message: "try again later"}
	}
	s.rec.data = string(b)
	s.s.mails = append(s.s.mails, s.rec)
	return nil
}
func (s *smtpSession) Reset()        { s.rec = mailRec{auth: s.rec.auth} }
func (s *smtpSession) Logout() error { return nil }

func startSMTP(t *testing.T, user, pw string, failN int) *smtpServer {
	s := &smtpServer{user: user, pw: pw, failN: failN}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{s: s}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func emailRoute(s *smtpServer, user, pw string) schema.Notification {
	host, port, _ := net.SplitHostPort(s.addr)
	var p int
	for _, c := range port {
		p = p*10 + int(c-'0')
	}
	return schema.Notification{Type: "email", On: []string{"failure"}, Config: schema.NotificationConfig{
		SMTPHost: host, SMTPPort: p, From: "backups@example.com", To: "dev1@example.com, dev2@example.com",
		Username: user, Password: schema.Secret(pw), MaxAttempts: 4, MaxWait: 10 * time.Second}}
}

func TestEmailWithAndWithoutAuth(t *testing.T) {
	for _, auth := range []bool{false, true} {
		user, pw := "", ""
		if auth {
			user, pw = "mailer", "smtp-SECRET-pw"
		}
		s := startSMTP(t, user, pw, 0)
		d := New([]schema.Notification{emailRoute(s, user, pw)}, nil, fast)
		if err := d.Send(context.Background(), failure()); err != nil {
			t.Fatalf("auth=%v: %v", auth, err)
		}
		if len(s.mails) != 1 {
			t.Fatalf("auth=%v: %d mails", auth, len(s.mails))
		}
		m := s.mails[0]
		if m.from != "backups@example.com" || strings.Join(m.to, ",") != "dev1@example.com,dev2@example.com" || m.auth != auth {
			t.Fatalf("envelope %+v", m)
		}
		for _, want := range []string{"Subject: [backupkit] app_db backup failed", "status:   failure", "error:    pg_dump failed", "db:       app_db"} {
			if !strings.Contains(m.data, want) {
				t.Fatalf("mail lacks %q:\n%s", want, m.data)
			}
		}
		if strings.Contains(m.data, "smtp-SECRET-pw") {
			t.Fatal("password in mail")
		}
	}
}

func TestEmailTransientErrorsRetried(t *testing.T) {
	s := startSMTP(t, "", "", 2)
	if err := New([]schema.Notification{emailRoute(s, "", "")}, nil, fast).Send(context.Background(), failure()); err != nil {
		t.Fatal(err)
	}
	if len(s.mails) != 1 {
		t.Fatalf("%d mails after two 451s", len(s.mails))
	}
	bad := startSMTP(t, "mailer", "right", 0)
	err := New([]schema.Notification{emailRoute(bad, "mailer", "wrong-SECRET")}, nil, fast).Send(context.Background(), failure())
	if err == nil || strings.Contains(err.Error(), "wrong-SECRET") {
		t.Fatalf("bad auth: %v", err)
	}
}

func TestOverdueAndRecoveredOncePerEpisode(t *testing.T) {
	tr := NewTracker()
	t0 := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	last := t0
	limit := 2 * time.Hour
	var sent []string
	for tick := 0; tick < 12*60; tick++ { // a tick a minute for 12 hours
		now := t0.Add(time.Duration(tick) * time.Minute)
		ok := tick > 6*60 // backups fail for the first 6 hours
		if tick%60 == 0 {
			if ok {
				last = now
			}
			if ev := tr.Result("app", ok); ev != nil {
				sent = append(sent, ev.Event)
			}
		}
		if ev := tr.Check("app", last, limit, now); ev != nil {
			sent = append(sent, ev.Event)
		}
	}
	if strings.Join(sent, ",") != "overdue,recovered" {
		t.Fatalf("sent %v, want overdue then recovered, once each", sent)
	}
}

func TestNoSecretsInLogsOrPayloads(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	srv, _, bodies := statusServer(t, 500, 500, 500, 500, 500)
	n := hook(srv.URL+"/services/T0/B0/SECRETTOKENPATH?token=SECRETQUERY", "failure")
	n.Config.MaxAttempts = 2
	d := New([]schema.Notification{n}, log, fast)
	err := d.Send(context.Background(), failure())
	all := logs.String() + err.Error()
	for _, s := range []string{"SECRETTOKENPATH", "SECRETQUERY", "tok-SECRET-123"} {
		if strings.Contains(all, s) {
			t.Fatalf("secret %q leaked: %s", s, all)
		}
	}
	select {
	case b := <-bodies:
		if strings.Contains(string(b), "SECRET") {
			t.Fatalf("payload leaks: %s", b)
		}
	default:
	}
}
