module example.com/gokeys

go 1.22
