#!/bin/sh
# Run a command (the ROS 2 tests) with DDS traffic confined to this machine.
#
# Inside a private network namespace only loopback exists, so nothing can leave even if a
# discovery variable is wrong; without one (no privileges) we rely on the variables alone.
# A random domain id is kept either way: a network namespace does not isolate /dev/shm.
#   tools/run_isolated.sh .venv/bin/python -m pytest tests/ros
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOCALHOST_ONLY=1
if [ -z "${ROS_DOMAIN_ID:-}" ]; then
    ROS_DOMAIN_ID=$(( $(od -An -N2 -tu2 /dev/urandom) % 101 + 1 ))
    export ROS_DOMAIN_ID
fi
if unshare -n true 2>/dev/null; then
    exec unshare -n sh -c 'ip link set lo up && exec "$@"' run_isolated "$@"
fi
if unshare -rn true 2>/dev/null; then
    exec unshare -rn sh -c 'ip link set lo up && exec "$@"' run_isolated "$@"
fi
echo "run_isolated: no network namespace available; relying on LOCALHOST discovery only" >&2
exec "$@"
