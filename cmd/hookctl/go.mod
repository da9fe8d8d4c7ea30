module github.com/hookline/hookline/cmd/hookctl

go 1.26

replace (
	github.com/hookline/hookline/pkg => ../../pkg
	github.com/hookline/hookline/proto => ../../proto
)
