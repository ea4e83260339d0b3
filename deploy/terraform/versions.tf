# Terraform and provider versions are pinned so that a plan is reproducible.
terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }

  # Remote state: configure per environment with `terraform init -backend-config=...`
  # (an S3 bucket + DynamoDB lock table that this stack does not create for itself).
  backend "s3" {}
}
