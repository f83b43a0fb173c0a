//go:build race

package format

// raceDetector: the race detector's shadow memory shows in every page
// count and resident size a test measures.
const raceDetector = true
