# Titans MLOps on AWS: shared provider settings, lookups and naming.

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      Project     = "titans-mlops"
      Environment = var.environment
      ManagedBy   = "terraform"
    })
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

# Zones are named explicitly: the set cannot grow (and re-shuffle subnets) when AWS adds a zone.
data "aws_availability_zones" "selected" {
  state = "available"

  filter {
    name   = "zone-name"
    values = var.availability_zones
  }
}

locals {
  name       = "${var.name}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  azs        = var.availability_zones
  az_count   = length(var.availability_zones)

  cluster_name    = "${local.name}-eks"
  artifact_bucket = coalesce(var.artifact_bucket_name, "${local.name}-artifacts-${local.account_id}")
  log_bucket      = "${local.artifact_bucket}-access-logs"
}
