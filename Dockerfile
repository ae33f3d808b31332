FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md schema.sql ./
COPY handlers handlers
COPY streams streams
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 orchestrator \
    && mkdir -p /var/lib/orchestrator && chown orchestrator /var/lib/orchestrator
# HOST=0.0.0.0: the container's port is published, so SMS_WEBHOOK_SIGNING_KEY and
# API_TOKEN must be given at run time (the worker refuses to start without them).
ENV SCHEMA_FILE=/app/schema.sql DATA_DIR=/var/lib/orchestrator HOST=0.0.0.0
USER orchestrator
EXPOSE 8003
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c \
  "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8003/health').status == 200 else 1)"
CMD ["orchestrator", "worker"]
