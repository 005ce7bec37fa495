# One image for every choreo process of this project: a service (the default command shows
# the form: `choreo run services.<name>`), the saga tracker or the ingress.
#   docker build -t choreo-app .
#   docker run choreo-app choreo run services.inventory
# Build stage: install choreo and its dependencies into a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, from pyproject.toml alone (an empty package stands in for the code), so
# a change to choreo's code or the README rebuilds only the last, seconds-long step.
COPY pyproject.toml ./
RUN python -m venv /opt/choreo \
    && mkdir choreo && touch choreo/__init__.py README.md \
    && /opt/choreo/bin/pip install ".[postgres]" \
    && rm -r choreo README.md build choreo.egg-info
COPY README.md ./
COPY choreo ./choreo
RUN /opt/choreo/bin/pip install --no-deps --force-reinstall .

# Run stage: the virtualenv, the project's schemas, services and deploy settings; no build
# tools, no sources of dependencies, and a user without a login or write access to the code.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin choreo
COPY --from=build /opt/choreo /opt/choreo
WORKDIR /app
COPY schemas ./schemas
COPY services ./services
COPY deploy ./deploy
ENV PATH=/opt/choreo/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHOREO_METRICS_HOST=0.0.0.0 \
    CHOREO_METRICS_PORT=9464 \
    CHOREO_HEALTH_URL=http://127.0.0.1:9464/readyz
USER 10001
EXPOSE 9464
# /readyz of `choreo run` (choreo/_observability/http.py) on CHOREO_METRICS_PORT: healthy
# once partitions are assigned, unhealthy when the poll loop stops (a handler holding it).
# The ingress answers on its own port: it sets CHOREO_HEALTH_URL to that.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['CHOREO_HEALTH_URL'], timeout=2)"]
CMD ["choreo", "run", "services.orders"]
