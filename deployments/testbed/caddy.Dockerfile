# Caddy 2, the reverse proxy in front of the testbed's HTTP app services,
# FROM scratch (no public image can be pulled here).
#
# Expected build context layout, prepared by `cargo xtask setup` from the
# host's Debian `caddy` package: every file at the path it has on the host,
#
#   <ctx>/usr/bin/caddy
#   <ctx>/lib64/ld-linux-x86-64.so.2        (the dynamic loader)
#   <ctx>/lib/x86_64-linux-gnu/lib*.so.*    (every library `ldd` lists)
#   <ctx>/config, <ctx>/data                (empty; owned by the service user)
#
# Build:  DOCKER_BUILDKIT=0 docker build -f caddy.Dockerfile -t fetchml/testbed-caddy:local <ctx>
#
# Caddy autosaves the config it was last given to $XDG_CONFIG_HOME, and
# `--resume` starts from it: mount a volume on /config so a restarted proxy
# keeps routing to the set of containers `cargo xtask` last switched to.
FROM scratch

COPY usr /usr
COPY lib /lib
COPY lib64 /lib64
COPY --chown=65534:65534 config /config
COPY --chown=65534:65534 data /data
ENV XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data HOME=/data

USER 65534:65534
ENTRYPOINT ["/usr/bin/caddy"]
CMD ["run", "--resume", "--config", "/etc/caddy/caddy.json"]
