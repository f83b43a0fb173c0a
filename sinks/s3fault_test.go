package sinks_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/sinks"
)

// faultProxy forwards to the real S3 server, failing requests that
// fail(n, r) picks (n counts requests from 1).
func faultProxy(t *testing.T, srv *testenv.S3Server, fail func(n int64, r *http.Request) bool) (string, *atomic.Int64) {
	target, _ := url.Parse(srv.Endpoint)
	rp := httputil.NewSingleHostReverseProxy(target)
	var n atomic.Int64
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail(n.Add(1), r) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `<Error><Code>SlowDown</Code><Message>injected fault</Message></Error>`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p.URL, &n
}

func s3Via(t *testing.T, srv *testenv.S3Server, endpoint string) *sinks.S3 {
	s, err := sinks.NewS3(context.Background(), "s3", sinks.S3Options{
		Bucket: "backups", Region: "us-east-1", Prefix: "f" + testenv.RandHex(4),
		Endpoint: endpoint, ForcePathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		PartSize: 5 << 20, Concurrency: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func isUploadPart(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Get("partNumber") != ""
}

func TestS3IntermittentErrorsAreRetried(t *testing.T) {
	srv := testenv.StartS3(t)
	// Every third request fails once; the SDK's retries carry the upload.
	ep, n := faultProxy(t, srv, func(n int64, r *http.Request) bool { return n%3 == 0 })
	s := s3Via(t, srv, ep)
	data := make([]byte, 17<<20)
	rand.Read(data)
	key := "app/20261125_020000.000000000Z.dump"
	n0, err := s.Put(context.Background(), key, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("upload through intermittent faults: %v", err)
	}
	rc, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) || n0 != int64(len(data)) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	t.Logf("%d requests, a third of them failed", n.Load())
}

func TestS3PersistentErrorsAbortCleanly(t *testing.T) {
	srv := testenv.StartS3(t)
	// Parts after the first always fail.
	ep, _ := faultProxy(t, srv, func(n int64, r *http.Request) bool { return isUploadPart(r) && r.URL.Query().Get("partNumber") != "1" })
	s := s3Via(t, srv, ep)
	data := make([]byte, 17<<20)
	rand.Read(data)
	key := "app/20261125_020000.000000000Z.dump"
	start := time.Now()
	_, err := s.Put(context.Background(), key, bytes.NewReader(data))
	if err == nil || !strings.Contains(err.Error(), "SlowDown") {
		t.Fatalf("upload with failing parts: %v", err)
	}
	if el := time.Since(start); el > time.Minute {
		t.Fatalf("retries took %v: not bounded", el)
	}
	if objs, err := s.List(context.Background(), ""); err != nil || len(objs) != 0 {
		t.Fatalf("visible after a failed upload: %+v %v", objs, err)
	}
	if lo, err := s.Leftovers(context.Background(), ""); err != nil || len(lo) != 0 {
		t.Fatalf("the failed upload was not aborted: %+v %v", lo, err)
	}
}

// An upload of many parts reuses its buffers: never more than
// concurrency + 1 of them, however long the stream (memory stays flat
// between a 1 GiB and a 4 GiB dump).
func TestS3PartBuffersAreReused(t *testing.T) {
	srv := testenv.StartS3(t)
	s := s3Via(t, srv, srv.Endpoint)
	data := make([]byte, 81<<20) // 17 parts of 5 MiB
	rand.Read(data)
	if _, err := s.Put(context.Background(), "app/20261125_020000.000000000Z.dump", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if n := s.PartBuffers(); n > 3 {
		t.Fatalf("%d part buffers allocated for 17 parts with 2 in flight; want at most 3", n)
	}
}
