# Sourced by the sh/*.sh scripts (after they cd to the repository root).

run() {  # run LOG COMMAND...: output to LOG; on failure show the end of LOG, stop with its status
    log=$1
    shift
    echo "$* > $log"
    "$@" > "$log" 2>&1 || {
        status=$?
        tail -n 20 "$log" >&2
        echo "failed (exit status $status): see $log" >&2
        exit "$status"
    }
}
