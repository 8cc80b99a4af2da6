#!/bin/sh
# The official image's entrypoint, plus protected mode: the official image compiles its
# default to off (a container's port is reachable only where it is published), while Debian's
# build keeps it on, which would refuse every client from outside the container.
set -e

# A first argument that is an option or a configuration file is for redis-server.
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

# Started as root (the default), it fixes the ownership of /data and steps down to redis.
if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

# Protected mode off, unless the command line or the configuration file (the first argument,
# when it is not an option) sets it.
if [ "$1" = 'redis-server' ]; then
    config=''
    if [ $# -gt 1 ] && [ "${2#-}" = "$2" ]; then
        config="$2"
    fi
    case " $* " in
        *' --protected-mode '*) ;;
        *)
            if [ -z "$config" ] || ! grep -qiE '^[[:space:]]*protected-mode[[:space:]]' "$config" 2>/dev/null; then
                set -- "$@" --protected-mode no
            fi
            ;;
    esac
fi

# The umask of Redis' own systemd unit, unless one was chosen.
if [ "$(umask)" = '0022' ]; then
    umask 0077
fi

exec "$@"
