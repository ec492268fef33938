"""What a monitored account deploys: the IAM policies and the CloudFormation template."""
