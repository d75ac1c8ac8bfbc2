module example.com/cairngo

go 1.24
