FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md schema.sql ./
COPY handlers handlers
COPY streams streams
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 orchestrator \
    && mkdir -p /var/lib/orchestrator && chown orchestrator /var/lib/orchestrator
ENV SCHEMA_FILE=/app/schema.sql DATA_DIR=/var/lib/orchestrator
USER orchestrator
EXPOSE 8003
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c \
  "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8003/health').status == 200 else 1)"
CMD ["orchestrator", "worker"]
