//go:build cgo

package format

import (
	"fmt"

	ddzstd "github.com/DataDog/zstd"
	"github.com/klauspost/compress/zstd"
)

func init() { newCFrameEncoder = newLibzstdFrameEncoder }

// libzstdLevels are the levels libzstd compresses, as libzstd's nearest
// (the Go encoder's documentation: fastest ≈ 1, default ≈ 3). Measured on
// a dump in 2 MiB frames, libzstd's 1 and 3 are faster and smaller than
// the Go encoder's fastest and default; at better and best the Go
// encoder is both faster and smaller than any libzstd level near them
// (5 to 12), so those stay with it.
var libzstdLevels = map[zstd.EncoderLevel]int{
	zstd.SpeedFastest: 1,
	zstd.SpeedDefault: 3,
}

// newLibzstdFrameEncoder compresses frames with libzstd (DataDog/zstd
// builds it in), each context used by one frame at a time. libzstd's
// one-shot call writes no content checksum: encode adds it as RFC 8878
// §3.1.1 describes (the descriptor's Content_Checksum_flag, then the low
// 32 bits of the content's XXH64 after the last block), so the frames
// are checked like the Go encoder's.
func newLibzstdFrameEncoder(level zstd.EncoderLevel, workers int) (frameEncoder, bool) {
	lv, ok := libzstdLevels[level]
	if !ok {
		return frameEncoder{}, false
	}
	ctxs := make(chan ddzstd.Ctx, workers)
	for range workers {
		ctxs <- ddzstd.NewCtx()
	}
	return frameEncoder{
		encode: func(out, in []byte) ([]byte, error) {
			if need := ddzstd.CompressBound(len(in)) + 4; cap(out) < need {
				out = make([]byte, 0, need)
			}
			c := <-ctxs
			frame, err := c.CompressLevel(out, in, lv) // within bound: room for the checksum
			ctxs <- c
			if err != nil {
				return nil, fmt.Errorf("zstd: %w", err)
			}
			return withContentChecksum(frame, in)
		},
		close: func() {},
	}, true
}
