package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/backupkit/backupkit/schema"
)

// webhook POSTs the event as JSON (or a Slack/Mattermost "text" body).
// go-retryablehttp retries connection errors, 5xx and 429 (honouring
// Retry-After), never other 4xx.
type webhook struct {
	url     string
	headers map[string]schema.Secret
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
	// Return the last response instead of a URL-bearing error.
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return c
}

func newWebhook(c schema.NotificationConfig, o Options) *webhook {
	return &webhook{url: c.URL.Reveal(), headers: c.Headers, slack: c.Format == "slack",
		client: newClient(c.MaxAttempts, o)}
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
		return fmt.Errorf("POST %s: invalid request", schema.RedactURL(w.url))
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
		return fmt.Errorf("POST %s: %s", schema.RedactURL(rawURL), redactErr(err, rawURL))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("POST %s: HTTP %d", schema.RedactURL(rawURL), resp.StatusCode)
	}
	return nil
}

func redactErr(err error, rawURL string) string {
	return strings.ReplaceAll(err.Error(), rawURL, schema.RedactURL(rawURL))
}

// healthchecks pings a healthchecks.io-style check: /start when a backup
// begins, the URL on success, /fail (with the error) on failure.
type healthchecks struct {
	url    string
	client *retryablehttp.Client
}

func newHealthchecks(c schema.NotificationConfig, o Options) *healthchecks {
	return &healthchecks{url: strings.TrimRight(c.URL.Reveal(), "/"), client: newClient(c.MaxAttempts, o)}
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
		return fmt.Errorf("POST %s: invalid request", schema.RedactURL(u))
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	return do(h.client, req, u)
}
