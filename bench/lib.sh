# Shell helpers the bench scripts share. Sourced, never run:
#   . "$root/bench/lib.sh"
# Messages name the calling script ($0).

# free_port: prints a TCP port that is free on 127.0.0.1 now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT [LOG]: returns once something listens on 127.0.0.1:PORT, up
# to 15 s; else says so (with the last lines of LOG) and returns 1.
wait_port() {
  for _ in $(seq 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$(basename "$0"): nothing listening on $1" >&2
  if [ -n "${2:-}" ]; then tail -5 "$2" >&2; fi
  return 1
}

# prepare_gh DIR: the scratch Go module in DIR, pinned to gh
# (github.com/cli/cli/v2) v2.63.0, with its dependencies downloaded (so
# that the timed builds download nothing).
prepare_gh() {
  mkdir -p "$1"
  (
    cd "$1"
    [ -f go.mod ] || go mod init cairn.bench/gh >/dev/null 2>&1
    # The package, not the module: `go get MODULE@V` records the module but
    # not the go.sum lines of the packages gh imports (go 1.26).
    go get github.com/cli/cli/v2/cmd/gh@v2.63.0 >/dev/null 2>&1
    go list -deps github.com/cli/cli/v2/cmd/gh >/dev/null
  )
}
