output "version" {
  description = "The version running."
  value       = qufop_ufop_deployment.demo.deployed_version
}

output "image" {
  description = "The image the builder pushed to the cluster's registry."
  value       = qufop_ufop_version.demo.image
}

output "healthy_instances" {
  description = "Instances whose health check passes."
  value       = length([for i in data.qufop_ufop.demo.instances : i if i.healthy])
}
