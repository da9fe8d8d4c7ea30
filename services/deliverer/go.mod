module github.com/hookline/hookline/services/deliverer

go 1.26

replace (
	github.com/hookline/hookline/pkg => ../../pkg
	github.com/hookline/hookline/proto => ../../proto
)
