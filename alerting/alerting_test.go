package alerting

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math/big"
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

	"github.com/backupkit/backupkit/internal/secret"
)

var fast = Options{RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 50 * time.Millisecond}

func hook(url string, on ...string) Route {
	return Route{Type: "webhook", On: on, URL: secret.Secret(url), MaxAttempts: 5, MaxWait: 10 * time.Second,
		Headers: map[string]secret.Secret{"Authorization": "Bearer tok-SECRET-123"}}
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
	d := New([]Route{hook(srv.URL+"/hook", "failure")}, fast)
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
	d := New([]Route{hook(srv.URL+"/hook/SECRETPATH", "failure")}, fast)
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
	d := New([]Route{hook(srv.URL, "failure")}, fast)
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
	n.MaxWait = 1500 * time.Millisecond
	n.MaxAttempts = 20
	d := New([]Route{n}, Options{RetryWaitMin: 200 * time.Millisecond, RetryWaitMax: time.Second})
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
	n.Slack = true
	d := New([]Route{n}, fast)
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
	n := Route{Type: "healthchecks", On: []string{"both"}, URL: secret.Secret(srv.URL + "/ping/uuid"), MaxAttempts: 3, MaxWait: 5 * time.Second}
	d := New([]Route{n}, fast)
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
	tls      bool // offers STARTTLS with a certificate from testCA
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
	return startSMTPWith(t, user, pw, failN, true)
}

func startSMTPWith(t *testing.T, user, pw string, failN int, withTLS bool) *smtpServer {
	s := &smtpServer{user: user, pw: pw, failN: failN, tls: withTLS}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{s: s}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = !withTLS
	if withTLS {
		srv.TLSConfig = testTLS(t)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func emailRoute(s *smtpServer, user, pw string) Route {
	host, port, _ := net.SplitHostPort(s.addr)
	var p int
	for _, c := range port {
		p = p*10 + int(c-'0')
	}
	tlsMode := "none"
	if s.tls {
		tlsMode = "starttls"
	}
	return Route{Type: "email", On: []string{"failure"}, SMTPHost: host, SMTPPort: p, From: "backups@example.com",
		To: []string{"dev1@example.com", "dev2@example.com"}, Username: user, Password: secret.Secret(pw),
		TLS: tlsMode, MaxAttempts: 4, MaxWait: 10 * time.Second}
}

// testTLS is a server certificate for 127.0.0.1, signed by a CA that the
// fast options trust.
func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	fast.RootCAs = pool
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func TestEmailWithAndWithoutAuth(t *testing.T) {
	for _, auth := range []bool{false, true} {
		user, pw := "", ""
		if auth {
			user, pw = "mailer", "smtp-SECRET-pw"
		}
		s := startSMTP(t, user, pw, 0)
		d := New([]Route{emailRoute(s, user, pw)}, fast)
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

// tls: starttls (the default) requires STARTTLS: a server that does not
// offer it gets nothing, rather than the mail in clear text.
func TestEmailStartTLSRequired(t *testing.T) {
	plain := startSMTPWith(t, "mailer", "smtp-SECRET-pw", 0, false)
	r := emailRoute(plain, "mailer", "smtp-SECRET-pw")
	r.TLS = "starttls"
	err := New([]Route{r}, fast).Send(context.Background(), failure())
	if err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") || len(plain.mails) != 0 {
		t.Fatalf("no STARTTLS: err %v, %d mails sent", err, len(plain.mails))
	}
	r.TLS = "none" // explicitly in clear text
	if err := New([]Route{r}, fast).Send(context.Background(), failure()); err != nil || len(plain.mails) != 1 {
		t.Fatalf("tls: none: %v, %d mails", err, len(plain.mails))
	}
}

func TestEmailTransientErrorsRetried(t *testing.T) {
	s := startSMTP(t, "", "", 2)
	if err := New([]Route{emailRoute(s, "", "")}, fast).Send(context.Background(), failure()); err != nil {
		t.Fatal(err)
	}
	if len(s.mails) != 1 {
		t.Fatalf("%d mails after two 451s", len(s.mails))
	}
	bad := startSMTP(t, "mailer", "right", 0)
	err := New([]Route{emailRoute(bad, "mailer", "wrong-SECRET")}, fast).Send(context.Background(), failure())
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

func TestNoSecretsInErrorsOrPayloads(t *testing.T) {
	// One failure, then the payload is delivered and checked.
	srv, n, bodies := statusServer(t, 500)
	r := hook(srv.URL+"/services/T0/B0/SECRETTOKENPATH?token=SECRETQUERY", "failure")
	if err := New([]Route{r}, fast).Send(context.Background(), failure()); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 2 {
		t.Fatalf("%d attempts, want 2", n.Load())
	}
	b := <-bodies
	if !strings.Contains(string(b), `"error":"pg_dump failed"`) || strings.Contains(string(b), "SECRET") {
		t.Fatalf("payload: %s", b)
	}
	// Errors: HTTP failures, a closed port with a password in the URL
	// (Go masks it, but keeps the user and re-encodes the path), and a
	// path that Go re-encodes.
	fail, _, _ := statusServer(t, 500, 500, 500)
	for _, u := range []string{
		fail.URL + "/services/T0/B0/SECRETTOKENPATH?token=SECRETQUERY",
		"http://SECRETUSER:SECRETPW@127.0.0.1:1/hook/SECRETTOKENPATH",
		"http://127.0.0.1:1/hook/SECRET TOKEN é PATH?k=SECRETQUERY",
	} {
		r := hook(u, "failure")
		r.MaxAttempts = 2
		err := New([]Route{r}, fast).Send(context.Background(), failure())
		if err == nil {
			t.Fatalf("%s: no error", u)
		}
		for _, s := range []string{"SECRET", "tok-SECRET-123", "%20TOKEN"} {
			if strings.Contains(err.Error(), s) {
				t.Fatalf("secret %q leaked: %v", s, err)
			}
		}
	}
}

// Custom headers and a token-bearing URL never follow a redirect to
// another host; a redirect on the same host is followed.
func TestNoCrossHostRedirects(t *testing.T) {
	var leaked atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != "" || strings.Contains(r.Referer(), "SECRET") {
			leaked.Add(1)
		}
	}))
	defer other.Close()
	var sameHost atomic.Int32
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			sameHost.Add(1)
			return
		}
		if r.URL.Path == "/same" {
			http.Redirect(w, r, "/moved", http.StatusTemporaryRedirect)
			return
		}
		http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer first.Close()
	r := hook(first.URL+"/hook/SECRETPATH", "failure")
	r.Headers = map[string]secret.Secret{"X-Api-Key": "key-SECRET"}
	r.MaxAttempts = 1
	err := New([]Route{r}, fast).Send(context.Background(), failure())
	if err == nil || !strings.Contains(err.Error(), "redirect to another host") || leaked.Load() != 0 {
		t.Fatalf("cross-host redirect: err %v, leaked %d", err, leaked.Load())
	}
	r = hook(first.URL+"/same", "failure")
	if err := New([]Route{r}, fast).Send(context.Background(), failure()); err != nil || sameHost.Load() != 1 {
		t.Fatalf("same-host redirect: %v, %d", err, sameHost.Load())
	}
}
