# One image for every Shiftcraft service: sim, render nodes, scheduler, bots.
# The service is chosen by the command (see docker-compose.yml and docs/deploy.md):
#   docker run --rm shiftcraft shiftcraft server --host 0.0.0.0
FROM python:3.11-slim

# iproute2: `tc` for link conditions (deploy/entrypoint.py). libgomp1: numba's
# OpenMP threading layer, so a render node renders several sessions' frames at
# once (without it numba falls back to a layer that allows one at a time).
# Nothing else is needed from apt: numba, av (ffmpeg/x264), aiortc and pygame
# ship manylinux wheels.
RUN apt-get update \
    && apt-get install -y --no-install-recommends iproute2 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# NUMBA_CACHE_DIR: the renderer's compiled kernels, baked in below and writable
# by the service user (the install itself is root-owned, read-only to it).
# SC_RUN_AS: the entrypoint drops to this user after shaping links (containers
# that shape start as root with NET_ADMIN; the service never runs as root).
# SDL_*: pygame is imported by client code the bots share; there is no display.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    NUMBA_CACHE_DIR=/var/cache/shiftcraft/numba \
    SC_RUN_AS=shiftcraft \
    SDL_VIDEODRIVER=dummy \
    SDL_AUDIODRIVER=dummy

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/shiftcraft \
        shiftcraft \
    && mkdir -p /data /var/cache/shiftcraft/numba \
    && chown shiftcraft:shiftcraft /data /var/cache/shiftcraft/numba

WORKDIR /opt/shiftcraft

# Dependencies first, read from pyproject.toml itself (no second list to drift):
# this layer is rebuilt only when the dependencies change, not on every edit.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The package. Editable on purpose: the render node serves renderer/web/*
# and the experiments read experiments/scenarios/*.yaml from the source tree,
# and pyproject.toml declares no package data, so a regular wheel would leave
# them out. The tree stays root-owned (read-only to the service user).
COPY . .
RUN pip install --no-deps -e . \
    && python -c "import renderer.node.service as s; assert (s.WEB_ROOT / 'index.html').is_file()"

# Compile the ray-caster once at build time so a render node's first start
# does not spend tens of seconds in numba (the cache is per CPU model: a
# different host CPU recompiles once, into the same writable folder).
USER shiftcraft
RUN python -c "import renderer; print(f'renderer warm-up {renderer.warm_up():.1f} s')"

VOLUME ["/data"]
# Documentation only; the ports are set by each service's --port.
EXPOSE 8765 8770 8780

ENTRYPOINT ["python", "/opt/shiftcraft/deploy/entrypoint.py"]
CMD ["shiftcraft", "--help"]
