package sinks_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/sinks"
	"github.com/backupkit/backupkit/sinks/sinktest"
)

func TestLocalConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinks.Sink {
		return sinks.NewLocal("local", filepath.Join(t.TempDir(), "store"))
	}, sinktest.Options{})
}

func TestLocalPermissionsAndLeftovers(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	s := sinks.NewLocal("local", root)
	ctx := context.Background()
	key := "app_db/20261125_020000.000000000Z.dump"
	if _, err := s.Put(ctx, key, strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(root, key))
	di, _ := os.Stat(filepath.Join(root, "app_db"))
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Fatalf("modes: file %v dir %v, want 0600 and 0700", fi.Mode().Perm(), di.Mode().Perm())
	}
	// A temp file as a killed process leaves it.
	tmp := filepath.Join(root, "app_db", ".20261125_030000.000000000Z.dump.tmp-0123456789ab")
	os.WriteFile(tmp, []byte("partial"), 0o600)
	objs, _ := s.List(ctx, "app_db/")
	if len(objs) != 1 {
		t.Fatalf("list shows temp files: %+v", objs)
	}
	lo, err := s.Leftovers(ctx, "app_db/")
	if err != nil || len(lo) != 1 || lo[0].Key != "app_db/.20261125_030000.000000000Z.dump.tmp-0123456789ab" {
		t.Fatalf("leftovers = %+v, %v", lo, err)
	}
	if err := s.Cleanup(ctx, lo[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatal("cleanup left the temp file")
	}
	if err := s.Cleanup(ctx, sinks.Leftover{Key: key}); err == nil {
		t.Fatal("cleanup of a backup name was accepted")
	}
}

// newS3 returns an S3 sink on the test server with a fresh prefix.
func newS3(t *testing.T, srv *testenv.S3Server) *sinks.S3 {
	s, err := sinks.NewS3(context.Background(), "s3", sinks.S3Options{
		Bucket: "backups", Region: "us-east-1", Prefix: "t" + testenv.RandHex(4) + "/bk",
		Endpoint: srv.Endpoint, ForcePathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		PartSize: 5 << 20, Concurrency: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestS3Conformance(t *testing.T) {
	srv := testenv.StartS3(t)
	sinktest.Run(t, func(t *testing.T) sinks.Sink { return newS3(t, srv) }, sinktest.Options{})
}

func TestS3LeftoverUploads(t *testing.T) {
	srv := testenv.StartS3(t)
	s := newS3(t, srv)
	ctx := context.Background()
	// A multipart upload that a killed process never completed.
	cfg := aws.Config{Region: "us-east-1", Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}, nil
	})}
	c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(srv.Endpoint); o.UsePathStyle = true })
	prefix := strings.TrimSuffix(strings.TrimPrefix(s.Describe(), "s3://backups/"), " at "+srv.Endpoint)
	key := "app_db/20261125_020000.000000000Z.dump"
	if _, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("backups"), Key: aws.String(prefix + "/" + key)}); err != nil {
		t.Fatal(err)
	}
	lo, err := s.Leftovers(ctx, "app_db/")
	if err != nil || len(lo) != 1 || lo[0].Key != key || lo[0].UploadID == "" {
		t.Fatalf("leftovers = %+v, %v", lo, err)
	}
	if time.Since(lo[0].Started) > time.Hour {
		t.Fatalf("upload start time %v is off", lo[0].Started)
	}
	if err := s.Cleanup(ctx, lo[0]); err != nil {
		t.Fatal(err)
	}
	if lo, _ := s.Leftovers(ctx, "app_db/"); len(lo) != 0 {
		t.Fatalf("after cleanup: %+v", lo)
	}
	if objs, _ := s.List(ctx, "app_db/"); len(objs) != 0 {
		t.Fatalf("an incomplete upload is listed: %+v", objs)
	}
}

// checksum: when_required, for servers that reject the SDK's newer
// request checksums, works end to end too.
func TestS3ChecksumWhenRequired(t *testing.T) {
	srv := testenv.StartS3(t)
	s, err := sinks.NewS3(context.Background(), "s3", sinks.S3Options{
		Bucket: "backups", Region: "us-east-1", Prefix: "wr" + testenv.RandHex(4), Checksum: "when_required",
		Endpoint: srv.Endpoint, ForcePathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PartSize: 5 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	data := strings.Repeat("backupkit ", 1300000) // 13 MB: three parts
	key := "app/20261125_020000.000000000Z.dump"
	if _, err := s.Put(context.Background(), key, strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if objs, _ := s.List(context.Background(), ""); len(objs) != 0 {
		t.Fatalf("left: %+v", objs)
	}
}

// Describe (what `test` and errors show) never carries user info that an
// endpoint URL may hold.
func TestS3DescribeHidesEndpointUserInfo(t *testing.T) {
	s, err := sinks.NewS3(context.Background(), "s3", sinks.S3Options{Bucket: "b", Region: "us-east-1",
		Endpoint: "http://user:ep-SECRET@minio.example:9000", AccessKey: "a", SecretKey: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Describe(); strings.Contains(d, "SECRET") || strings.Contains(d, "user") || !strings.Contains(d, "minio.example:9000") {
		t.Fatalf("Describe() = %q", d)
	}
}

// create_bucket: a missing bucket is created on first use (a fresh
// MinIO next to the sidecar); without it a missing bucket says so.
func TestS3CreateBucket(t *testing.T) {
	srv := testenv.StartS3(t)
	opts := sinks.S3Options{Bucket: "fresh" + testenv.RandHex(3), Region: "us-east-1", Endpoint: srv.Endpoint,
		ForcePathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
	s, _ := sinks.NewS3(context.Background(), "s3", opts)
	if _, err := s.List(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "does not exist: create it") {
		t.Fatalf("missing bucket: %v", err)
	}
	opts.CreateBucket = true
	s, _ = sinks.NewS3(context.Background(), "s3", opts)
	if objs, err := s.List(context.Background(), ""); err != nil || len(objs) != 0 {
		t.Fatalf("create_bucket: %v %v", objs, err)
	}
	if _, err := s.Put(context.Background(), "app/x", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
}

// A folder BackupKit may not write says who owns it and what to do.
func TestLocalPermissionDeniedSaysWhy(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may write anywhere: nothing to deny")
	}
	root := t.TempDir()
	os.Chmod(root, 0o500)
	defer os.Chmod(root, 0o700)
	_, err := sinks.NewLocal("l", root).Put(context.Background(), "app/x", strings.NewReader("x"))
	if err == nil || !strings.Contains(err.Error(), "BackupKit runs as uid") {
		t.Fatalf("err = %v", err)
	}
}
