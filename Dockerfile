# One image for every MedChat process: the Synapse main process, each worker and nginx
# (docker-compose.yml picks the role with `python -m medchat_dev.devconfig --cluster ...`).
FROM python:3.11-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends curl nginx && rm -rf /var/lib/apt/lists/*
COPY . /app
RUN pip install --no-cache-dir -e .
EXPOSE 8008 8080
