//go:build !slow

package aggregator

// manyConns is the number of agent connections of TestConcurrentAgents;
// 1,000 with -tags slow.
const manyConns = 100
