//go:build slow

package aggregator

const manyConns = 1000
