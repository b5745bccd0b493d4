//go:build !race

package e2e

// raceBuild reports whether the tests (and so keygate) are built with -race.
const raceBuild = false
