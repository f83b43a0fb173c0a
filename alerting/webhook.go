package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/backupkit/backupkit/internal/secret"
)

// webhook POSTs the event as JSON (or a Slack/Mattermost "text" body).
// go-retryablehttp retries connection errors, 5xx and 429 (honouring
// Retry-After), never other 4xx.
type webhook struct {
	url     string
	headers map[string]secret.Secret
	slack   bool
	client  *retryablehttp.Client
}

func newClient(attempts int, o Options) *retryablehttp.Client {
	c := retryablehttp.NewClient()
	c.Logger = nil // its logs carry URLs, which carry tokens
	c.RetryMax = max(attempts-1, 0)
	c.RetryWaitMin = o.RetryWaitMin
	c.RetryWaitMax = o.RetryWaitMax
	c.HTTPClient.Timeout = 30 * time.Second
	// Custom headers (API keys) and a token-bearing URL must not follow
	// a redirect to another host.
	c.HTTPClient.CheckRedirect = sameHostRedirects
	// Return the last response instead of a URL-bearing error.
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return c
}

// sameHostRedirects follows at most 5 redirects, all on the original
// scheme, host and port.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("stopped after 5 redirects")
	}
	if o := via[0].URL; req.URL.Scheme != o.Scheme || req.URL.Host != o.Host {
		return fmt.Errorf("refusing a redirect to another host (%s://%s)", req.URL.Scheme, req.URL.Host)
	}
	return nil
}

func newWebhook(r Route, o Options) *webhook {
	return &webhook{url: r.URL.Reveal(), headers: r.Headers, slack: r.Slack, client: newClient(r.MaxAttempts, o)}
}

func (w *webhook) send(ctx context.Context, e Event) error {
	var body []byte
	if w.slack {
		body, _ = json.Marshal(map[string]string{"text": "*[backupkit]* " + text(e)})
	} else {
		body, _ = json.Marshal(e)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, w.url, body)
	if err != nil {
		return fmt.Errorf("POST %s: invalid request", secret.RedactURL(w.url))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "backupkit")
	for k, v := range w.headers {
		req.Header.Set(k, v.Reveal())
	}
	return do(w.client, req, w.url)
}

// do runs a request and turns its outcome into an error that names the
// URL only in redacted form.
func do(c *retryablehttp.Client, req *retryablehttp.Request, rawURL string) error {
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %s", secret.RedactURL(rawURL), redactErr(err))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("POST %s: HTTP %d", secret.RedactURL(rawURL), resp.StatusCode)
	}
	return nil
}

// redactErr describes a request error without its URL: net/http wraps
// errors in *url.Error, whose text holds the URL (sometimes re-encoded, or
// with a masked password, so a plain string replace would miss it).
func redactErr(err error) string {
	var ue *url.Error
	for errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	// Some transport errors repeat the address; keep only host and port.
	return strings.TrimSpace(msg)
}

// healthchecks pings a healthchecks.io-style check: /start when a backup
// begins, the URL on success, /fail (with the error) on failure.
type healthchecks struct {
	url    string
	client *retryablehttp.Client
}

func newHealthchecks(r Route, o Options) *healthchecks {
	return &healthchecks{url: strings.TrimRight(r.URL.Reveal(), "/"), client: newClient(r.MaxAttempts, o)}
}

func (h *healthchecks) send(ctx context.Context, e Event) error {
	u := h.url
	switch {
	case e.Event == KindStart:
		u += "/start"
	case e.Event == KindTest || e.Status == "success":
	default:
		u += "/fail"
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader([]byte(text(e))))
	if err != nil {
		return fmt.Errorf("POST %s: invalid request", secret.RedactURL(u))
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	return do(h.client, req, u)
}
