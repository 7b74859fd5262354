# Redis for the testbed stack, FROM scratch (no public image can be pulled).
#
# Expected build context layout, prepared by `cargo xtask` from the host's
# redis-server: every file sits at the path it has on the host, copied with
# `cp -L` so symlinks become regular files:
#
#   <ctx>/usr/bin/redis-server                    (the host binary; on Debian a
#                                                   symlink to redis-check-rdb,
#                                                   copied under this name)
#   <ctx>/lib64/ld-linux-x86-64.so.2              (the dynamic loader)
#   <ctx>/lib/x86_64-linux-gnu/lib*.so.*          (every library `ldd
#                                                   /usr/bin/redis-server` lists,
#                                                   at the path ldd prints)
#   <ctx>/redis.Dockerfile                        (this file; harmless in the image)
#
# Build:  DOCKER_BUILDKIT=0 docker build -f <ctx>/redis.Dockerfile -t fetchml/testbed-redis:local <ctx>
#
# Runs as root: the `redis-data` volume is created root-owned from /data below,
# and there is no shell here to fix ownership at start-up.
FROM scratch

COPY . /
# Creates /data so the image also runs without a volume mounted there.
WORKDIR /data

EXPOSE 6379
ENTRYPOINT ["/usr/bin/redis-server", "--appendonly", "yes", "--dir", "/data", "--bind", "0.0.0.0", "--protected-mode", "no"]
