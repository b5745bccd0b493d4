//go:build !race

package stack

// raceEnabled reports whether this program was built with -race.
const raceEnabled = false
