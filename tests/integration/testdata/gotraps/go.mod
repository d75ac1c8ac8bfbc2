module example.com/gotraps

go 1.24
