variable "name" {
  description = "Name prefix for every resource."
  type        = string
  default     = "titans"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Environment name (staging, production, ...); part of every resource name."
  type        = string
  default     = "production"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.environment))
    error_message = "environment must be 2-16 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-west-1"
}

variable "tags" {
  description = "Extra tags added to every resource."
  type        = map(string)
  default     = {}
}

# --- network -----------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR block of the VPC (a /16 leaves room for up to four /20 private subnets)."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr))
    error_message = "vpc_cidr must be a valid IPv4 CIDR block, e.g. 10.40.0.0/16."
  }
}

variable "availability_zones" {
  description = "Availability zones of the region to use (one private and one public subnet in each)."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 4
    error_message = "availability_zones must list 2 to 4 zones: EKS and a Multi-AZ RDS need at least two."
  }
}

variable "single_nat_gateway" {
  description = "Use one NAT gateway for all zones (cheaper, but a zone outage cuts egress)."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups (VPC flow logs, EKS control plane)."
  type        = number
  default     = 365
}

# --- EKS ---------------------------------------------------------------------

variable "kubernetes_version" {
  description = "Kubernetes version of the EKS control plane."
  type        = string
  default     = "1.31"
}

variable "cluster_endpoint_public_access" {
  description = "Expose the EKS API endpoint publicly as well as inside the VPC."
  type        = bool
  default     = false
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDR blocks allowed to reach the public EKS API endpoint when it is enabled."
  type        = list(string)
  default     = []
}

variable "cluster_admin_arns" {
  description = "IAM principal ARNs granted cluster-admin through EKS access entries."
  type        = list(string)
  default     = []
}

variable "node_instance_types" {
  description = "EC2 instance types of the managed node group."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "node_capacity_type" {
  description = "ON_DEMAND or SPOT for the managed node group."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.node_capacity_type)
    error_message = "node_capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "node_disk_size_gb" {
  description = "Root volume size of each node, in GiB."
  type        = number
  default     = 50
}

variable "node_min_size" {
  description = "Minimum number of nodes."
  type        = number
  default     = 2
}

variable "node_desired_size" {
  description = "Desired number of nodes."
  type        = number
  default     = 3
}

variable "node_max_size" {
  description = "Maximum number of nodes."
  type        = number
  default     = 6
}

variable "app_namespace" {
  description = "Kubernetes namespace of the Titans workloads (API, MLflow, retrain CronJob)."
  type        = string
  default     = "titans"
}

variable "app_service_accounts" {
  description = "Service accounts in app_namespace that get the artifact-store role via EKS Pod Identity."
  type        = list(string)
  default     = ["titans-api", "titans-mlflow", "titans-retrain"]
}

# --- RDS PostgreSQL (MLflow backend store + Titans ops store) ----------------

variable "db_engine_version" {
  description = "PostgreSQL major.minor version."
  type        = string
  default     = "16.4"
}

variable "db_parameter_group_family" {
  description = "Parameter group family matching db_engine_version."
  type        = string
  default     = "postgres16"
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_allocated_storage_gb" {
  description = "Initial storage, in GiB."
  type        = number
  default     = 50
}

variable "db_max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling, in GiB."
  type        = number
  default     = 200
}

variable "db_name" {
  description = "Database created with the instance (the Titans ops store; MLflow gets its own database, see README)."
  type        = string
  default     = "titans"
}

variable "db_username" {
  description = "Master user name. The password is generated and rotated by RDS in AWS Secrets Manager."
  type        = string
  default     = "titans_admin"
}

variable "db_multi_az" {
  description = "Run a standby in a second zone."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Days of automated backups kept (point-in-time recovery window)."
  type        = number
  default     = 14

  validation {
    condition     = var.db_backup_retention_days >= 7 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 7 and 35."
  }
}

variable "db_deletion_protection" {
  description = "Refuse to delete the database instance."
  type        = bool
  default     = true
}

# --- S3 ----------------------------------------------------------------------

variable "artifact_bucket_name" {
  description = "Name of the MLflow artifact bucket; empty means <name>-<environment>-artifacts-<account id>."
  type        = string
  default     = ""
}

variable "artifact_noncurrent_days" {
  description = "Days a replaced (noncurrent) artifact version is kept before it expires."
  type        = number
  default     = 90
}
