package sinks

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/backupkit/backupkit/internal/fault"
)

// S3Options configures an S3 sink.
type S3Options struct {
	Bucket, Region, Prefix string
	Endpoint               string // S3-compatible servers; empty for AWS
	ForcePathStyle         bool
	StorageClass           string // default STANDARD
	// Checksum is "when_supported" (SDK default) or "when_required", for
	// S3-compatible servers that reject the SDK's newer checksums.
	Checksum             string
	AccessKey, SecretKey string // both empty: the AWS credential chain
	// PartSize is the first multipart part size (default 12 MiB).
	// Concurrency is the number of parts in flight (default 2). Memory ≈
	// part size × (concurrency + 1): 36 MiB at the defaults, until a dump
	// outgrows its first tenth of MaxParts.
	PartSize    int64
	Concurrency int
	// MaxParts is the provider's limit on parts per upload (default and
	// at most 10,000, S3's; some S3-compatible providers allow 1,000).
	// Parts double in size every tenth of MaxParts (never past S3's
	// 5 GiB), so at 12 MiB an upload holds 10.7 TiB in 10,000 parts and
	// 1.07 TiB in 1,000.
	MaxParts int
	// CreateBucket creates the bucket when it does not exist yet (a fresh
	// MinIO next to the sidecar); off, a missing bucket is an error.
	CreateBucket bool
}

// S3 stores backups in a bucket: multipart uploads completed only after
// the whole stream succeeded and aborted on any failure.
type S3 struct {
	name   string
	opt    S3Options
	client *s3.Client

	partBuffers atomic.Int64 // part buffers allocated (tests)
}

var _ Sink = (*S3)(nil)

const (
	maxAttempts = 4 // per request, the SDK's standard retryer
	minPartSize = 5 << 20
	maxParts    = 10000
	maxPartSize = 5 << 30
)

// NewS3 builds an S3 sink. It does not contact the server.
func NewS3(ctx context.Context, name string, o S3Options) (*S3, error) {
	if o.PartSize == 0 {
		o.PartSize = 12 << 20
	}
	if o.PartSize < minPartSize {
		o.PartSize = minPartSize
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	if o.MaxParts <= 0 || o.MaxParts > maxParts {
		o.MaxParts = maxParts
	}
	if o.StorageClass == "" {
		o.StorageClass = "STANDARD"
	}
	opts := []func(*config.LoadOptions) error{config.WithRegion(o.Region)}
	if o.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 config: %w", err)
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = o.ForcePathStyle
		if o.Checksum == "when_required" {
			so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
		so.Retryer = retry.NewStandard(func(ro *retry.StandardOptions) {
			ro.MaxAttempts = maxAttempts
			ro.MaxBackoff = 5 * time.Second
		})
	})
	return &S3{name: name, opt: o, client: client}, nil
}

// Name implements Sink.
func (s *S3) Name() string { return s.name }

// Describe implements Sink.
func (s *S3) Describe() string {
	d := "s3://" + s.opt.Bucket
	if s.opt.Prefix != "" {
		d += "/" + strings.Trim(s.opt.Prefix, "/")
	}
	if s.opt.Endpoint != "" {
		d += " at " + s.endpoint()
	}
	return d
}

func (s *S3) objKey(key string) string {
	if p := strings.Trim(s.opt.Prefix, "/"); p != "" {
		return p + "/" + key
	}
	return key
}

func (s *S3) relKey(obj string) (string, bool) {
	p := strings.Trim(s.opt.Prefix, "/")
	if p == "" {
		return obj, true
	}
	return strings.CutPrefix(obj, p+"/")
}

// partSize is the size of part n (1-based).
func (s *S3) partSize(n int) int64 {
	tier := (n - 1) / max(1, s.opt.MaxParts/10)
	size := s.opt.PartSize
	for ; tier > 0 && size < maxPartSize; tier-- {
		size *= 2
	}
	return min(maxPartSize, size)
}

// Put implements Sink: a single PutObject for a stream shorter than one
// part, else a multipart upload.
func (s *S3) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	k := s.objKey(key)
	first := make([]byte, s.partSize(1))
	s.partBuffers.Add(1)
	n, err := io.ReadFull(r, first)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		out, err := s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &s.opt.Bucket, Key: &k, Body: bytes.NewReader(first[:n]),
			ContentLength: aws.Int64(int64(n)), StorageClass: types.StorageClass(s.opt.StorageClass),
		})
		if err != nil {
			return 0, s.wrap("put "+key, err)
		}
		sum := md5.Sum(first[:n])
		if err := checkETag(aws.ToString(out.ETag), hex.EncodeToString(sum[:])); err != nil {
			s.Delete(context.WithoutCancel(ctx), key)
			return 0, fmt.Errorf("put %s: %w", key, err)
		}
		return int64(n), nil
	}
	if err != nil {
		return 0, err
	}
	return s.multipart(ctx, key, k, first, r)
}

type part struct {
	n   int32
	buf []byte
}

func (s *S3) multipart(ctx context.Context, key, k string, first []byte, r io.Reader) (total int64, err error) {
	up, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &s.opt.Bucket, Key: &k, StorageClass: types.StorageClass(s.opt.StorageClass),
	})
	if err != nil {
		return 0, s.wrap("start upload of "+key, err)
	}
	uploadID := up.UploadId
	defer func() {
		if err != nil {
			// Abort with a fresh, bounded context: ctx may be cancelled.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.opt.Bucket, Key: &k, UploadId: uploadID})
		}
	}()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var (
		mu        sync.Mutex
		sums      = map[int32][16]byte{}
		completed []types.CompletedPart
		firstErr  error
		wg        sync.WaitGroup
	)
	sem := make(chan struct{}, s.opt.Concurrency)
	upload := func(p part) {
		sum := md5.Sum(p.buf)
		out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &s.opt.Bucket, Key: &k, UploadId: uploadID, PartNumber: aws.Int32(p.n),
			Body: bytes.NewReader(p.buf), ContentLength: aws.Int64(int64(len(p.buf))),
		})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if firstErr == nil {
				firstErr = s.wrap(fmt.Sprintf("upload part %d of %s", p.n, key), err)
				cancel(firstErr)
			}
			return
		}
		completed = append(completed, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(p.n)})
		sums[p.n] = sum
	}
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return firstErr
	}

	// Part buffers are reused: memory stays near part size × (concurrency+1).
	free := make(chan []byte, s.opt.Concurrency+1)
	getBuf := func(size int64) []byte {
		select {
		case b := <-free:
			if int64(cap(b)) >= size {
				return b[:size]
			}
		default:
		}
		s.partBuffers.Add(1)
		return make([]byte, size)
	}
	buf, final := first, false
	var readErr error
loop:
	for n := 1; ; n++ {
		if n > s.opt.MaxParts {
			readErr = fmt.Errorf("stream exceeds %d parts (max_parts): raise part_size_mib", s.opt.MaxParts)
			break
		}
		total += int64(len(buf))
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if err := failed(); err != nil {
			readErr = err
			break
		}
		if ctx.Err() != nil {
			readErr = context.Cause(ctx)
			break
		}
		wg.Add(1)
		go func(p part) {
			defer wg.Done()
			upload(p)
			// The buffer goes back before the slot does, so the next part
			// reuses it: never more than concurrency + 1 buffers.
			select {
			case free <- p.buf[:cap(p.buf)]:
			default:
			}
			<-sem
		}(part{n: int32(n), buf: buf})
		if final {
			break
		}
		next := getBuf(s.partSize(n + 1))
		m, err := io.ReadFull(r, next)
		switch {
		case err == io.EOF:
			break loop
		case err == io.ErrUnexpectedEOF:
			buf, final = next[:m], true
		case err != nil:
			readErr = err
			break loop
		default:
			buf = next
		}
	}
	wg.Wait()
	if readErr == nil {
		readErr = failed()
	}
	if readErr == nil {
		readErr = ctx.Err()
	}
	if readErr != nil {
		return total, readErr
	}
	sort.Slice(completed, func(i, j int) bool { return *completed[i].PartNumber < *completed[j].PartNumber })
	done, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.opt.Bucket, Key: &k, UploadId: uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	})
	if err != nil {
		return total, s.wrap("complete upload of "+key, err)
	}
	// The completed object's checksum: S3's multipart ETag is the MD5 of
	// the parts' MD5s and their count.
	all := md5.New()
	for i := int32(1); i <= int32(len(completed)); i++ {
		sum := sums[i]
		all.Write(sum[:])
	}
	if err := checkETag(aws.ToString(done.ETag), fmt.Sprintf("%x-%d", all.Sum(nil), len(completed))); err != nil {
		s.Delete(context.WithoutCancel(ctx), key) // what is stored is not what was sent
		return total, fmt.Errorf("complete upload of %s: %w", key, err)
	}
	return total, nil
}

// checkETag compares the ETag the server gave a completed object with
// the one its bytes imply. A server whose ETags are not MD5-based (or
// that gives none) is not judged by them.
func checkETag(got, want string) error {
	got = strings.ToLower(strings.Trim(got, `"`))
	if !etagShape.MatchString(got) {
		return nil
	}
	if got != want {
		return fault.Mark(fault.Transient, fmt.Errorf("the stored object's checksum (ETag %s) is not that of the bytes sent (%s)", got, want))
	}
	return nil
}

var etagShape = regexp.MustCompile(`^[0-9a-f]{32}(-[0-9]+)?$`)

// List implements Sink; it pages through any number of keys. With
// CreateBucket, a missing bucket is created and listed as empty.
func (s *S3) List(ctx context.Context, prefix string) ([]Object, error) {
	out, err := s.list(ctx, prefix)
	var nb *types.NoSuchBucket
	var ae smithy.APIError
	if err != nil && s.opt.CreateBucket && (errors.As(err, &nb) || errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket") {
		if _, cerr := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.opt.Bucket}); cerr != nil {
			return nil, s.wrap("create bucket "+s.opt.Bucket, cerr)
		}
		return nil, nil
	}
	return out, err
}

func (s *S3) list(ctx context.Context, prefix string) ([]Object, error) {
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.opt.Bucket, Prefix: aws.String(s.objKey(prefix))})
	var out []Object
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.wrap("list", err)
		}
		for _, o := range page.Contents {
			k, ok := s.relKey(aws.ToString(o.Key))
			if !ok {
				continue
			}
			out = append(out, Object{Key: k, Size: aws.ToInt64(o.Size)})
		}
	}
	return out, nil
}

// Open implements Sink.
func (s *S3) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	k := s.objKey(key)
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.opt.Bucket, Key: &k})
	if err != nil {
		var nsk *types.NoSuchKey
		var re interface{ HTTPStatusCode() int }
		if errors.As(err, &nsk) || (errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound) {
			return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
		}
		return nil, s.wrap("open "+key, err)
	}
	return out.Body, nil
}

// Pin implements Sink: it records the object's ETag (and version id on a
// versioned bucket); every reader asks for that version with If-Match, so
// a replaced object fails with a precondition error instead of returning
// other bytes.
func (s *S3) Pin(ctx context.Context, key string) (Pinned, error) {
	k := s.objKey(key)
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.opt.Bucket, Key: &k})
	if err != nil {
		var re interface{ HTTPStatusCode() int }
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
			return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
		}
		return nil, s.wrap("head "+key, err)
	}
	return &pinnedObject{s: s, key: key, etag: aws.ToString(head.ETag), version: aws.ToString(head.VersionId), size: aws.ToInt64(head.ContentLength)}, nil
}

type pinnedObject struct {
	s             *S3
	key           string
	etag, version string
	size          int64
}

func (p *pinnedObject) Open(ctx context.Context) (io.ReadCloser, error) {
	k := p.s.objKey(p.key)
	in := &s3.GetObjectInput{Bucket: &p.s.opt.Bucket, Key: &k}
	if p.etag != "" {
		in.IfMatch = aws.String(p.etag)
	}
	if p.version != "" {
		in.VersionId = aws.String(p.version)
	}
	out, err := p.s.client.GetObject(ctx, in)
	if err != nil {
		return nil, p.s.wrap("open "+p.key+" (the version that was checked)", err)
	}
	return out.Body, nil
}
func (p *pinnedObject) Size() int64  { return p.size }
func (p *pinnedObject) Close() error { return nil }

// Delete implements Sink, in batches of 1,000.
func (s *S3) Delete(ctx context.Context, keys ...string) error {
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		var ids []types.ObjectIdentifier
		for _, k := range keys[:n] {
			ids = append(ids, types.ObjectIdentifier{Key: aws.String(s.objKey(k))})
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &s.opt.Bucket,
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
		if err != nil {
			return s.wrap("delete", err)
		}
		var errs []error
		for _, e := range out.Errors {
			if aws.ToString(e.Code) == "NoSuchKey" {
				continue
			}
			errs = append(errs, fmt.Errorf("delete %s: %s", aws.ToString(e.Key), aws.ToString(e.Message)))
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		keys = keys[n:]
	}
	return nil
}

// Leftovers implements Sink: incomplete multipart uploads under prefix.
func (s *S3) Leftovers(ctx context.Context, prefix string) ([]Leftover, error) {
	in := &s3.ListMultipartUploadsInput{Bucket: &s.opt.Bucket, Prefix: aws.String(s.objKey(prefix))}
	var out []Leftover
	for {
		page, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return nil, s.wrap("list uploads", err)
		}
		for _, u := range page.Uploads {
			k, ok := s.relKey(aws.ToString(u.Key))
			if !ok {
				continue
			}
			out = append(out, Leftover{Key: k, Final: k, Started: aws.ToTime(u.Initiated), UploadID: aws.ToString(u.UploadId)})
		}
		if !aws.ToBool(page.IsTruncated) {
			return out, nil
		}
		in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
	}
}

// Cleanup implements Sink: aborts an incomplete upload.
func (s *S3) Cleanup(ctx context.Context, l Leftover) error {
	if l.UploadID == "" {
		return fmt.Errorf("refusing to clean up %q: no upload id", l.Key)
	}
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.opt.Bucket,
		Key: aws.String(s.objKey(l.Key)), UploadId: &l.UploadID})
	return s.wrap("abort upload of "+l.Key, err)
}

// wrap turns an SDK error into one that says the cause first, in a few
// words ("bucket x does not exist: create it…", "cannot reach …:
// connection refused"), without request ids, signatures or credentials;
// it classifies it (transient or permanent) and keeps the SDK's error in
// the chain for errors.As.
func (s *S3) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	kind, cause := fault.Permanent, err.Error()
	var ae smithy.APIError
	var re interface{ HTTPStatusCode() int }
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		kind, cause = fault.Unknown, err.Error()
	case errors.As(err, &dns):
		kind, cause = fault.Transient, fmt.Sprintf("cannot reach %s: no such host %q", s.endpoint(), dns.Name)
	case errors.Is(err, syscall.ECONNREFUSED):
		kind, cause = fault.Transient, fmt.Sprintf("cannot reach %s: connection refused", s.endpoint())
	case errors.As(err, &ae):
		code := ae.ErrorCode()
		switch code {
		case "NoSuchBucket":
			cause = fmt.Sprintf("bucket %q does not exist: create it, or set s3.bucket to an existing one", s.opt.Bucket)
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken":
			cause = fmt.Sprintf("access denied (%s): check access_key/secret_key and the bucket's policy", code)
		case "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling", "ThrottlingException":
			kind, cause = fault.Transient, code+": "+ae.ErrorMessage()
		default:
			cause = code + ": " + ae.ErrorMessage()
		}
		if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
			kind = fault.Transient
		}
	case errors.As(err, &ne):
		kind, cause = fault.Transient, fmt.Sprintf("cannot reach %s: %v", s.endpoint(), ne)
	}
	return fault.Mark(kind, &opError{msg: op + ": " + cause, err: err})
}

// endpoint names the server without any user info in its URL.
func (s *S3) endpoint() string {
	if s.opt.Endpoint != "" {
		if u, err := url.Parse(s.opt.Endpoint); err == nil && u.Host != "" {
			u.User = nil
			return u.String()
		}
		return "the configured endpoint"
	}
	return "S3 (" + s.opt.Region + ")"
}

// opError says what went wrong in its own words and keeps the original
// error for errors.As.
type opError struct {
	msg string
	err error
}

func (e *opError) Error() string { return e.msg }
func (e *opError) Unwrap() error { return e.err }
