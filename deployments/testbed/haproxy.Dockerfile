# HAProxy 2.6, the reverse proxy in front of the testbed's HTTP app services
# on compose, FROM scratch (no public image can be pulled here).
#
# Expected build context layout, prepared by `cargo xtask setup` from the
# host's Debian `haproxy` package: every file at the path it has on the host,
#
#   <ctx>/usr/sbin/haproxy
#   <ctx>/lib64/ld-linux-x86-64.so.2        (the dynamic loader)
#   <ctx>/lib/x86_64-linux-gnu/lib*.so.*    (every library `ldd` lists)
#   <ctx>/run/fetchml-proxy                 (empty; the runtime API's directory)
#
# Build:  DOCKER_BUILDKIT=0 docker build -f haproxy.Dockerfile -t fetchml/testbed-haproxy:local <ctx>
#
# The compose file bind-mounts a host directory on /run/fetchml-proxy and
# runs the container as that directory's owner; without one, the image's
# own directory (owned by nobody, mode 0700) is used.
FROM scratch

COPY usr /usr
COPY lib /lib
COPY lib64 /lib64
COPY --chown=65534:65534 run /run

USER 65534:65534
ENTRYPOINT ["/usr/sbin/haproxy"]
CMD ["-f", "/etc/haproxy/haproxy.cfg"]
