output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.main.id
}

output "private_subnet_ids" {
  description = "Private subnets (EKS nodes, RDS)."
  value       = aws_subnet.private[*].id
}

output "public_subnet_ids" {
  description = "Public subnets (NAT gateways, internet-facing load balancers)."
  value       = aws_subnet.public[*].id
}

output "eks_cluster_name" {
  description = "EKS cluster name: `aws eks update-kubeconfig --name <this>`."
  value       = aws_eks_cluster.main.name
}

output "eks_cluster_endpoint" {
  description = "EKS API endpoint (private unless cluster_endpoint_public_access)."
  value       = aws_eks_cluster.main.endpoint
}

output "eks_cluster_certificate_authority" {
  description = "Base64 CA certificate of the EKS API."
  value       = aws_eks_cluster.main.certificate_authority[0].data
}

output "eks_cluster_security_group_id" {
  description = "Security group EKS attaches to the control plane and managed nodes."
  value       = aws_eks_cluster.main.vpc_config[0].cluster_security_group_id
}

output "app_role_arn" {
  description = "IAM role the Titans service accounts assume through EKS Pod Identity."
  value       = aws_iam_role.app.arn
}

output "db_endpoint" {
  description = "PostgreSQL host:port for TITANS_DATABASE_URL and MLflow's --backend-store-uri."
  value       = aws_db_instance.main.endpoint
}

output "db_name" {
  description = "Database created with the instance (the ops store)."
  value       = aws_db_instance.main.db_name
}

output "db_master_secret_arn" {
  description = "Secrets Manager secret holding the RDS master user name and password."
  value       = aws_db_instance.main.master_user_secret[0].secret_arn
}

output "artifact_bucket" {
  description = "S3 bucket for MLflow artifacts (--artifacts-destination s3://<this>)."
  value       = aws_s3_bucket.artifacts.bucket
}

output "kms_key_arn" {
  description = "KMS key encrypting EKS secrets, EBS, RDS, logs and artifacts."
  value       = aws_kms_key.main.arn
}
