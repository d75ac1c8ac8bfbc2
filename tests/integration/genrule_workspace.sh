# Sourced by the Bazel client tests (clients/bazel_http_test.sh,
# shared_tier_clients_test.sh): one workspace that builds offline.
#   genrule_workspace DIR NAME   writes a workspace named NAME in DIR: six
#                                chained genrules g1..g6 (g1.txt..g6.txt) over
#                                seed.txt, no external repositories.
genrule_workspace() {
  local ws=$1 prev="seed.txt" i
  mkdir -p "$ws"
  echo "workspace(name = \"$2\")" >"$ws/WORKSPACE"
  echo "seed text" >"$ws/seed.txt"
  for i in 1 2 3 4 5 6; do
    echo "genrule(name = \"g$i\", srcs = [\"$prev\"], outs = [\"g$i.txt\"],"
    echo "        cmd = \"cat \$< > \$@ && echo step $i >> \$@\")"
    prev=":g$i"
  done >"$ws/BUILD"
}
