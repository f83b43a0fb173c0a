package sinks

// PartBuffers is how many part buffers the S3 sink has allocated.
func (s *S3) PartBuffers() int64 { return s.partBuffers.Load() }
