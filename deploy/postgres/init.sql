-- Runs once, when the Postgres volume is first created (deploy/compose.yaml): MLflow's backend
-- store gets its own database beside the Titans ops store (database `titans`).
CREATE DATABASE mlflow OWNER titans;
