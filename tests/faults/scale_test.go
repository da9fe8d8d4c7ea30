package faults

// killEvents is the size of the kill -9 test (issue 7 asks for 10,000).
const killEvents = 10000
