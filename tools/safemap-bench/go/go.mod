module safemap-bench/go

go 1.19
