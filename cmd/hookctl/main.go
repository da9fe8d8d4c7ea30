// Command hookctl is a Hookline service (placeholder until its issue lands).
package main

func main() {}
