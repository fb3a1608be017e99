"""se_deploy.report"""
