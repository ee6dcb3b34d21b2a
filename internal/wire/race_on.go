//go:build race

package wire

// raceEnabled: built with -race.
const raceEnabled = true
